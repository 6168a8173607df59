import dataclasses

import pytest

from oreal_core.config import ConfigError, OrealConfig, load_config


def test_named_configs_load_and_are_distinct():
    tiny = load_config("tiny-cpu")
    paper = load_config("oreal-7b")
    assert tiny.model.policy == "tiny"
    assert paper.rollout.samples_per_prompt == 16 and paper.data.prompts_per_step == 64
    assert paper.actor.optim.lr == 5e-7 and paper.token_rm.optim.lr == 2e-6
    assert paper.verifier.judge.max_in_flight == 64
    assert tiny.hash() != paper.hash()


def test_default_is_tiny_cpu():
    assert load_config().run.name == "tiny-cpu"


def test_defaults_match_the_reference():
    cfg = OrealConfig()
    assert (cfg.loss.positive_loss_factor, cfg.loss.negative_loss_factor, cfg.loss.kl_coef) == (1.0, 0.5, 0.01)
    assert cfg.loss.kl_type == "unbias" and cfg.algo.advantage == "rloo" and cfg.algo.selection == "pair"
    assert (cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k) == (1.0, 0.9, 0)
    assert cfg.verifier.thinking_finish_words == ("<conclude>", "**Final Answer**", "</think>")
    assert cfg.verifier.judge.concurrency_per_proc == (8, 8) and cfg.verifier.judge.num_processes == 8
    assert cfg.actor.freeze_steps == 10 and cfg.actor.scheduler_advances_while_frozen
    assert (cfg.token_rm.optim.lr, cfg.token_rm.optim.min_lr) == (2e-6, 4e-7)
    assert cfg.data.difficulty_bands[0] == (0.0, 0.2, 6)


def test_dotted_overrides_parse_as_yaml():
    cfg = load_config("tiny-cpu", ["loss.kl_coef=0.02", "rollout.engine=hf", "token_rm.enabled=false",
                                   "verifier.judge.hosts=[a:1, b:2]", "actor.optim.lr=1e-6", "actor.optim.min_lr=1e-7"])
    assert cfg.loss.kl_coef == 0.02 and cfg.rollout.engine == "hf" and not cfg.token_rm.enabled
    assert cfg.verifier.judge.hosts == ("a:1", "b:2")
    assert cfg.actor.optim.lr == 1e-6  # YAML 1.1 reads "1e-6" as a string; accepted as a float


def test_hash_is_stable_and_sensitive():
    assert load_config("tiny-cpu").hash() == load_config("tiny-cpu").hash()
    assert load_config("tiny-cpu", ["loss.kl_coef=0.02"]).hash() != load_config("tiny-cpu").hash()


def test_yaml_round_trip(tmp_path):
    cfg = load_config("oreal-7b")
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config().loss.kl_coef = 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss.kl_cof=0.1"], "loss.kl_cof: unknown key \\(did you mean 'loss.kl_coef'\\?\\)"),
        (["losses.kl_coef=0.1"], "losses: unknown key"),
        (["loss.kl_coef=-1"], "loss.kl_coef=-1.0: must be >= 0"),
        (["loss.kl_coef=abc"], "loss.kl_coef='abc': expected a number"),
        (["loss.kl_type=k9"], "loss.kl_type='k9': must be one of"),
        (["rollout.samples_per_prompt=1"], "rollout.samples_per_prompt=1: group advantages need"),
        (["rollout.samples_per_prompt=2.5"], "rollout.samples_per_prompt=2.5: expected an integer"),
        (["token_rm.enabled=maybe"], "token_rm.enabled='maybe': expected true or false"),
        (["rollout.top_p=0"], "rollout.top_p=0.0: must be in"),
        (["verifier.judge.enabled=true"], "verifier.judge.hosts=\\(\\): the judge is enabled"),
        (["verifier.judge.hosts=[nohostport]", "verifier.judge.enabled=true"], "expected 'host:port'"),
        (["verifier.stop_word=</s>"], "verifier.stop_word='</s>': must equal rollout.stop_word"),
        (["data.difficulty_bands=[[0.0, 0.5, 2], [0.4, 1.0, 1]]"], "data.difficulty_bands=.*overlap"),
        (["actor.optim.min_lr=1"], "actor.optim.min_lr=1.0: must be in"),
        (["loss=3"], "loss: expected a mapping"),
        (["novalue"], "expected key.path=value"),
    ],
)
def test_bad_values_name_field_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny-cpu", overrides)


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="'nope': no such file.*tiny-cpu"):
        load_config("nope")


def test_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
