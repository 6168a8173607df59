"""The Tracker's promises: the run never waits on a tracker, a broken one costs one warning,
a slow one a bounded, counted backlog, and one backend's trouble is not another's."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

import pytest

from oreal_core.tracking import backend as backend_module
from oreal_core.tracking.backend import Backend, TrackerRun, backend_for
from oreal_core.tracking.tracker import Tracker
from tests.tracking.raising_backend import RaisingAfterOpen, RaisingBackend
from tests.tracking.readers import jsonl_scalars

LOGGER = "oreal_core.tracking.tracker"


class SlowBackend(Backend):
    """Takes ``delay`` per write, or blocks until ``release`` is set."""

    name = "slow"

    def __init__(self, run: TrackerRun, delay: float = 0.0, release: threading.Event | None = None) -> None:
        super().__init__(run)
        self.delay, self.release, self.written = delay, release, []

    def open(self) -> dict[str, int]:
        return {}

    def log_params(self, params) -> None:
        pass

    def log_scalars(self, step, values) -> None:
        if self.release is not None:
            self.release.wait()
        time.sleep(self.delay)
        self.written.append(step)

    def close(self) -> None:
        pass


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("double", [RaisingBackend, RaisingAfterOpen])
def test_a_backend_raising_on_every_call_gives_one_warning(tmp_path, caplog, double):
    run = TrackerRun("down", "x", tmp_path)
    with Tracker({"down": partial(double, run)}) as tracker:
        for step in range(50):
            tracker.log_scalars(step, {"actor/pg_loss": 1.0})
            tracker.log_text(step, "samples", "text")
        assert tracker.wait_idle(10)
    said = warnings(caplog)
    assert len(said) == 1 and said[0].startswith("tracking backend down ") and "TrackerDown" in said[0]
    assert said[0].endswith("the run goes on without it")


def test_a_missing_package_names_the_extra_to_install(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(backend_module.BACKENDS, "tensorboard",
                        ("oreal_core.tracking.no_such_module", "TensorBoardBackend", "tensorboard"))
    with Tracker({"tensorboard": partial(backend_for, "tensorboard", TrackerRun("r", "x", tmp_path))}) as tracker:
        tracker.log_scalars(0, {"actor/pg_loss": 1.0})
    [said] = warnings(caplog)
    assert "pip install 'oreal-pipeline[tensorboard]'" in said


def test_a_misconfigured_backend_warns_once(tmp_path, caplog):
    run = TrackerRun("r", "x", tmp_path, mlflow_uri="nosuchscheme://nowhere")
    with Tracker({"mlflow": partial(backend_for, "mlflow", run)}) as tracker:
        tracker.log_scalars(0, {"actor/pg_loss": 1.0})
    [said] = warnings(caplog)
    assert said.startswith("tracking backend mlflow cannot be opened")


def test_one_broken_backend_leaves_the_others_complete(tmp_path, caplog):
    run = TrackerRun("mixed", "x", tmp_path)
    with Tracker({"down": partial(RaisingAfterOpen, run), "jsonl": partial(backend_for, "jsonl", run)}) as tracker:
        for step in range(20):
            tracker.log_scalars(step, {"actor/pg_loss": float(step)})
    assert jsonl_scalars(run) == {"actor/pg_loss": [(s, float(s)) for s in range(20)]}
    assert len(warnings(caplog)) == 1


def test_a_slow_backend_never_slows_the_caller(tmp_path):
    run = TrackerRun("slow", "x", tmp_path)
    backend = SlowBackend(run, delay=0.05)
    tracker = Tracker({"slow": lambda: backend}, queue_size=100)
    start = time.perf_counter()
    for step in range(20):
        tracker.log_scalars(step, {"actor/pg_loss": 1.0})
    assert time.perf_counter() - start < 0.05  # 20 writes take 1 s on the backend's thread
    tracker.close()
    assert backend.written == list(range(20))


def test_a_full_backlog_is_dropped_and_counted(tmp_path, caplog):
    release = threading.Event()
    backend = SlowBackend(TrackerRun("hung", "x", tmp_path), release=release)
    tracker = Tracker({"hung": lambda: backend}, queue_size=5, close_timeout_s=5)
    for step in range(30):
        tracker.log_scalars(step, {"actor/pg_loss": 1.0})
    release.set()
    tracker.close()
    dropped = tracker.workers[0].dropped
    assert 30 - 6 <= dropped <= 30 - 5  # the queue's 5, and the one the worker may have taken out already
    assert len(backend.written) == 30 - dropped
    said = warnings(caplog)
    assert len(said) == 2 and "queue of 5 entries is full" in said[0] and f"dropped {dropped} entries" in said[1]


def test_a_hung_backend_holds_the_end_of_the_run_for_close_timeout_only(tmp_path, caplog):
    never = threading.Event()
    tracker = Tracker({"hung": lambda: SlowBackend(TrackerRun("hung", "x", tmp_path), release=never)},
                      close_timeout_s=0.3)
    tracker.log_scalars(0, {"actor/pg_loss": 1.0})
    tracker.log_scalars(1, {"actor/pg_loss": 1.0})
    start = time.perf_counter()
    tracker.close()
    assert time.perf_counter() - start < 1.0
    assert any("did not write its backlog in time" in m for m in warnings(caplog))
    never.set()


def test_no_backend_no_thread(tmp_path):
    before = threading.active_count()
    with Tracker({}) as tracker:
        tracker.log_scalars(0, {"actor/pg_loss": 1.0})
        assert threading.active_count() == before
