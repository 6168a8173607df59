"""The temporary Prefect server a run starts batches its SQLite writes (flows/__init__.py):
the settings must reach the server's process, whose environment Prefect builds from ours."""

import sys
from pathlib import Path

from prefect import flow

from flows import PREFECT_SERVER_BATCHING


@flow
def _noop() -> int:
    return 1


def test_the_temporary_prefect_server_batches_its_writes(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert _noop() == 1  # starts the temporary server, or finds the one this worker started
    servers = sys.modules["prefect.server.api.server"].SubprocessASGIServer._instances.values()
    pids = [s.server_process.pid for s in servers if s.server_process is not None and s.server_process.poll() is None]
    assert pids, "no temporary Prefect server is running"
    for pid in pids:
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0"))
        assert {f"{name}={value}" for name, value in PREFECT_SERVER_BATCHING.items()} <= environ
