"""The TensorBoard UI of a tiny tracked run, served on 127.0.0.1, gives its scalars through
the UI's own HTTP API (what its charts load)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oreal_core.tracking.backend import TrackerRun
from tests.tracking.test_backends import log_steps, step_values

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_ui_serves_the_run_scalars(tmp_path):
    run = TrackerRun("ui-run", "tiny-cpu", tmp_path)
    log_steps(run, "tensorboard", range(3))
    port = free_port()
    tensorboard = Path(sys.executable).parent / "tensorboard"
    server = subprocess.Popen([str(tensorboard), "--logdir", str(tmp_path / "tensorboard"), "--host", "127.0.0.1",
                               "--port", str(port), "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                runs = httpx.get(f"{base}/data/runs", timeout=5).json()
                if "ui-run" in runs:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "TensorBoard never listed the run"
            time.sleep(0.5)
        tags = httpx.get(f"{base}/data/plugin/scalars/tags", timeout=10).json()["ui-run"]
        assert {"actor/pg_loss", "critic/score/mean", "timing_s/rollout", "perf/throughput"} <= set(tags)
        points = httpx.get(f"{base}/data/plugin/scalars/scalars", params={"run": "ui-run", "tag": "actor/pg_loss"},
                           timeout=10).json()
        assert [(step, value) for _, step, value in points] == [
            (s, pytest.approx(step_values(s)["actor/pg_loss"])) for s in range(3)]
    finally:
        server.terminate()
        server.wait(30)
