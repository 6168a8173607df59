"""A process logging to every backend is SIGKILLed (no close, no flush); the resumed run
catches up from its committed steps and replays the steps it redoes: each step once.

The "lake" here is the list of committed steps, 0-3; the resumed run redoes 2 and 3 live
(as a run killed in step 4 would not, but a run whose trackers lag behind would) and adds
4 and 5. TensorBoard buffers events for up to 5 s, so the kill loses some of them: the
catch-up writes those back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

from oreal_core.tracking.backend import TrackerRun, backend_for
from oreal_core.tracking.tracker import Tracker
from tests.tracking.readers import SCALARS
from tests.tracking.test_backends import BACKENDS, assert_each_step_once, step_values

COMMITTED = range(4)

KILLED = """
import os, signal, sys
from functools import partial
from pathlib import Path
from oreal_core.tracking.backend import TrackerRun, backend_for
from oreal_core.tracking.tracker import Tracker
from tests.tracking.test_backends import BACKENDS, step_values
run = TrackerRun("killed", "tiny-cpu", Path(sys.argv[1]))
tracker = Tracker({b: partial(backend_for, b, run) for b in BACKENDS})
for step in range(4):
    tracker.log_scalars(step, step_values(step))
assert tracker.wait_idle(60)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_resumed_holds_each_step_once(tmp_path):
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    run = TrackerRun("killed", "tiny-cpu", tmp_path)

    def lake(since: int):
        return [(step, step_values(step)) for step in COMMITTED if step >= since]

    with Tracker({b: partial(backend_for, b, run) for b in BACKENDS}, history=lake) as tracker:
        for step in range(2, 6):
            tracker.log_scalars(step, step_values(step))
    for backend in BACKENDS:
        assert_each_step_once(SCALARS[backend](run), backend, range(6))
