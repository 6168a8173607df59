import json

import pytest

from oreal_core.config import DataConfig, RolloutConfig, SyntheticTaskConfig
from oreal_core.data.prompts import check_prompts_fit, load_prompt_set
from oreal_core.data.records import PromptDataError
from oreal_core.models.tiny import build_tiny_policy, load_tokenizer
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.store import Lake


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def tokenizer(tiny_policy):
    return load_tokenizer(tiny_policy)


def _prompts_file(tmp_path, rates):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "gold_answer": str(i), "pass_rate": r}) + "\n"
                            for i, r in enumerate(rates)))
    return str(path)


def test_chat_template_and_system_prompt_are_applied(tmp_path, tokenizer):
    cfg = DataConfig(prompts=_prompts_file(tmp_path, [0.5]), system_prompt="Be brief.", balance_by_pass_rate=False)
    (prompt,) = load_prompt_set(cfg, tokenizer).prompts
    assert prompt.text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nq0?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert prompt.prompt_id == "prompts-0" and prompt.gold_answer == "0" and prompt.pass_rate == 0.5


def test_difficulty_balancing_repeats_by_band_and_counts_drops(tmp_path, tokenizer):
    rates = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    cfg = DataConfig(prompts=_prompts_file(tmp_path, rates), balance_by_pass_rate=True)
    result = load_prompt_set(cfg, tokenizer)
    ids = [p.prompt_id for p in result.prompts]
    assert [sum(i.split("#")[0] == f"prompts-{k}" for i in ids) for k in range(6)] == [6, 4, 4, 2, 0, 0]
    assert len(set(ids)) == len(ids) == 16
    assert result.report.as_dict()["dropped"] == {"pass_rate_outside_bands": 2} and result.report.kept == 4


def test_balancing_without_pass_rates_is_an_error_naming_the_row(tmp_path, tokenizer):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question": "a?", "answer": "1"}) + "\n")
    with pytest.raises(PromptDataError, match=f"{path}:1: no pass_rate"):
        load_prompt_set(DataConfig(prompts=str(path), balance_by_pass_rate=True), tokenizer)


def test_synthetic_prompt_set_is_the_train_split(tokenizer):
    cfg = DataConfig(prompts="synthetic", balance_by_pass_rate=False,
                     synthetic=SyntheticTaskConfig(train_size=100, heldout_size=10))
    result = load_prompt_set(cfg, tokenizer)
    assert len(result.prompts) == 100 and result.report.kept == 100
    assert all(p.text.endswith("<|im_start|>assistant\n") and "split=train" in p.source for p in result.prompts)


def test_all_prompts_dropped_by_the_bands_is_an_error(tmp_path, tokenizer):
    cfg = DataConfig(prompts=_prompts_file(tmp_path, [0.9, 1.0]), balance_by_pass_rate=True)
    with pytest.raises(PromptDataError, match="no prompts left: the pass rates of all 2 fall outside"):
        load_prompt_set(cfg, tokenizer)


def _long_prompts_file(tmp_path, lengths):
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"question": "x" * n, "gold_answer": "1"}) + "\n" for n in lengths))
    return path


def test_prompts_too_long_for_the_context_are_listed_by_file_and_line(tmp_path, tokenizer):
    path = _long_prompts_file(tmp_path, [5, 400, 5, 300, 170, 100])
    pool = load_prompt_set(DataConfig(prompts=str(path), balance_by_pass_rate=False), tokenizer)
    lengths = [len(tokenizer.encode(p.text, add_special_tokens=False)) for p in pool.prompts]
    assert lengths[5] + 96 <= 256 < lengths[4] + 96  # the rollout's tokenisation: 100 characters fit, 170 do not
    with pytest.raises(PromptDataError) as raised:
        check_prompts_fit(pool.prompts, tokenizer, RolloutConfig(max_new_tokens=96, max_length=256), 512)
    message = str(raised.value)
    assert [w for w in message.split() if w.startswith(str(path))] == [f"{path}:2:", f"{path}:4:", f"{path}:5:"]
    assert f"{path}:2: {lengths[1]} prompt tokens" in message and "(3 prompts too long)" in message
    assert "exceed the context of 256 tokens (min of rollout.max_length=256 and the model's 512)" in message
    with pytest.raises(PromptDataError, match=r"\(4 prompts too long\).* context of 200 tokens .*the model's 200"):
        check_prompts_fit(pool.prompts, tokenizer, RolloutConfig(max_new_tokens=96, max_length=600), 200)
    fitting = [p for p, n in zip(pool.prompts, lengths, strict=True) if n + 96 <= 256]
    check_prompts_fit(fitting, tokenizer, RolloutConfig(max_new_tokens=96, max_length=256), 512)


def _session_spec(tmp_path, tiny_policy, prompts):
    return RunSpec("r1", "tiny-cpu", (f"model.policy={tiny_policy}", f"data.prompts={prompts}",
                                      "data.balance_by_pass_rate=false", f"store.uri={tmp_path}/lake",
                                      f"train.checkpoint_dir={tmp_path}/ckpt"))


@pytest.mark.parametrize("bad", ["latin1", "too_long"])
def test_a_bad_prompt_file_is_refused_before_the_run_is_created(tmp_path, tiny_policy, bad):
    if bad == "latin1":
        prompts = tmp_path / "p.jsonl"
        prompts.write_bytes(b'{"question": "ok", "gold_answer": "1"}\n{"question": "\xe9", "gold_answer": "1"}\n')
        message = f"{prompts}:2: not UTF-8 text"
    else:
        prompts = _long_prompts_file(tmp_path, [5, 400])
        message = f"{prompts}:2: .* prompt tokens.* exceed the context of 256 tokens"
    spec = _session_spec(tmp_path, tiny_policy, prompts)
    with pytest.raises(PromptDataError, match=message):
        RunSession(spec)
    assert Lake.open(spec.load().store).runs() == [] and not (tmp_path / "ckpt").exists()


def test_a_good_prompt_file_opens_the_run(tmp_path, tiny_policy):
    spec = _session_spec(tmp_path, tiny_policy, _long_prompts_file(tmp_path, [5, 20]))
    session = RunSession(spec)
    try:
        assert session.lake.runs() == ["r1"] and len(session.prompt_pool.prompts) == 2
    finally:
        session.close()
