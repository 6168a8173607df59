"""EngineWatch on a real child process standing in for vLLM's EngineCore (the client side
is the two attributes the watch touches: the output queue and the utility futures)."""

import multiprocessing
import os
import queue
import signal
import time
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from oreal_core.rollout import RolloutEngineError
from oreal_core.rollout.engine_watch import EngineDied, EngineWatch


def _idle() -> None:
    time.sleep(120)


@pytest.fixture
def core():
    proc = multiprocessing.get_context("spawn").Process(target=_idle, name="EngineCore_DP0", daemon=True)
    proc.start()
    yield proc
    if proc.is_alive():
        proc.kill()
    proc.join()


def _llm(core):
    client = SimpleNamespace(outputs_queue=queue.Queue(), utility_results={1: Future()},
                             resources=SimpleNamespace(engine_manager=SimpleNamespace(processes=[core])))
    return SimpleNamespace(llm_engine=SimpleNamespace(engine_core=client)), client


def test_a_finished_call_releases_its_watcher_at_once(core):
    watch = EngineWatch(_llm(core)[0])
    start = time.perf_counter()
    for _ in range(20):
        with watch.watching("generate"):
            pass
    # The watcher wakes on the call's end: no poll period per call (it used to cost up to 0.25 s).
    assert (time.perf_counter() - start) / 20 < 0.05
    assert watch.alive()


def test_a_death_during_a_call_wakes_the_waiting_caller(core):
    llm, client = _llm(core)
    watch = EngineWatch(llm)
    died = rf"died during generate: EngineCore_DP0 \(pid {core.pid}\) exited with code -9"
    with pytest.raises(RolloutEngineError, match=died), watch.watching("generate"):
        os.kill(core.pid, signal.SIGKILL)
        woken = client.outputs_queue.get(timeout=10)  # where LLM.generate blocks
        assert isinstance(woken, EngineDied)
        with pytest.raises(EngineDied):
            client.utility_results[1].result(timeout=1)  # where collective_rpc blocks
        raise woken
    with pytest.raises(RolloutEngineError, match="vLLM engine is dead"), watch.watching("generate"):
        pass
