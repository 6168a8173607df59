import dataclasses
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from oreal_core.rollout import RolloutEngineError, RolloutInputError, SamplingSpec
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.types import FinishReason
from tests.rollout.policies import STOP, arithmetic_prompts, two_policies

SAMPLING = SamplingSpec(n=4, temperature=1.0, top_p=0.9, top_k=0, max_new_tokens=24, max_length=256,
                        stop_word=STOP, seed=7)


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    return two_policies(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def engine(policies):
    return HFEngine(policies[0], stop_word=STOP)


@pytest.fixture(scope="module")
def prompts(policies):
    return arithmetic_prompts(policies[0])


def test_samples_carry_the_documented_fields(engine, prompts):
    result = engine.generate(prompts, SAMPLING)
    assert result.engine == "hf" and result.num_prompts == 4 and len(result.samples) == 16
    assert [(s.prompt_id, s.sample_idx) for s in result.samples] == [(p.prompt_id, k) for p in prompts for k in range(4)]
    stop_id = engine.stop_token_id
    for sample in result.samples:
        assert 1 <= len(sample.token_ids) <= 24 and len(sample.logprobs) == len(sample.token_ids)
        assert all(math.isfinite(x) and x <= 0 for x in sample.logprobs)
        assert (sample.finish_reason is FinishReason.STOP) == (sample.token_ids[-1] == stop_id)
        assert stop_id not in sample.token_ids[:-1]
        assert sample.response == engine.tokenizer.decode(sample.token_ids)
        assert sample.prompt_token_ids == tuple(engine.tokenizer.encode(prompts[0].text)) or sample.prompt_id != prompts[0].prompt_id
    assert result.generate_s > 0 and result.tokens_per_s > 0 and set(result.timings()) >= {"rollout_tok_s"}


def test_rollout_logprobs_are_the_models_raw_logprobs(engine, prompts):
    sample = engine.generate(prompts[:1], SAMPLING).samples[0]
    ids = torch.tensor([sample.prompt_token_ids + sample.token_ids])
    with torch.no_grad():
        logits = engine.model(ids).logits[0, len(sample.prompt_token_ids) - 1:-1].log_softmax(-1)
    expected = logits.gather(-1, torch.tensor(sample.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(sample.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(engine, prompts):
    first = engine.generate(prompts, SAMPLING).samples
    assert engine.generate(prompts, SAMPLING).samples == first
    other = engine.generate(prompts, dataclasses.replace(SAMPLING, seed=8)).samples
    assert [s.token_ids for s in other] != [s.token_ids for s in first]


def test_length_finish_reason_when_budget_runs_out(engine, prompts):
    short = dataclasses.replace(SAMPLING, max_new_tokens=2)
    for sample in engine.generate(prompts, short).samples:
        assert len(sample.token_ids) <= 2
        assert sample.finish_reason is (FinishReason.STOP if sample.token_ids[-1] == engine.stop_token_id
                                        else FinishReason.LENGTH)


def test_reload_weights_in_place_equals_a_fresh_engine(policies, prompts, tmp_path):
    greedy = SamplingSpec.greedy(16, 256, STOP)
    engine = HFEngine(policies[0], stop_word=STOP)
    before = engine.generate(prompts, greedy).samples
    engine.reload_weights(policies[1], policy_version=3)
    reloaded = engine.generate(prompts, greedy).samples
    fresh = HFEngine(policies[1], stop_word=STOP).generate(prompts, greedy).samples
    assert [s.token_ids for s in reloaded] == [s.token_ids for s in fresh] != [s.token_ids for s in before]
    assert all(s.policy_version == 3 for s in reloaded)
    sampled = engine.generate(prompts, SAMPLING).samples
    assert [s.token_ids for s in sampled] == [s.token_ids for s in HFEngine(policies[1], stop_word=STOP)
                                               .generate(prompts, SAMPLING).samples]
    engine.load_weights(load_file(str(policies[0] / "model.safetensors")), policy_version=5)  # in memory
    assert [s.token_ids for s in engine.generate(prompts, greedy).samples] == [s.token_ids for s in before]
    with pytest.raises(RolloutEngineError, match="load_weights: missing"):
        engine.load_weights({"not.a.weight": torch.zeros(1)}, policy_version=6)
    bigger = AutoModelForCausalLM.from_pretrained(policies[1])
    bigger.resize_token_embeddings(bigger.config.vocab_size + 64)
    bigger.save_pretrained(tmp_path / "bigger")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(policies[1] / name, tmp_path / "bigger" / name)
    with pytest.raises(RolloutInputError, match="vocab_size=.* differs"):
        engine.reload_weights(tmp_path / "bigger", policy_version=4)


def test_bad_input_is_refused_before_sampling(engine, prompts, policies, tmp_path):
    with pytest.raises(RolloutInputError, match=r"exceed the context of 40 tokens"):
        engine.generate(prompts, dataclasses.replace(SAMPLING, max_length=40))
    huge = dataclasses.replace(prompts[0], text=prompts[0].text + "7 " * 600)
    with pytest.raises(RolloutInputError, match=f"prompt '{huge.prompt_id}': .* prompt tokens"):
        engine.generate([huge], SAMPLING)
    with pytest.raises(RolloutInputError, match="empty prompt"):
        engine.generate([dataclasses.replace(prompts[0], question=" ", text="")], SAMPLING)
    with pytest.raises(RolloutInputError, match="no prompts"):
        engine.generate([], SAMPLING)
    with pytest.raises(RolloutInputError, match="stop_word='</s>'"):
        engine.generate(prompts, dataclasses.replace(SAMPLING, stop_word="</s>"))
    bare = tmp_path / "bare"
    shutil.copytree(policies[0], bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(RolloutInputError, match="no tokenizer"):
        HFEngine(bare, stop_word=STOP)
    with pytest.raises(RolloutInputError, match="encodes to 2 tokens"):
        HFEngine(policies[0], stop_word="<|im_end|>x")


def test_open_engine_follows_rollout_engine(policies):
    from oreal_core.config import load_config
    from oreal_core.rollout import open_engine

    with open_engine(policies[0], load_config("tiny-cpu", ["rollout.engine=hf"])) as engine:
        assert isinstance(engine, HFEngine) and engine.stop_word == STOP
