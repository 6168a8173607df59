"""Background processes for tests that run real servers: each in its own process group,
logging to a file, stopped by its group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


@dataclass
class Service:
    """A background process in its own process group, logging to a file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, chars: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ({self.log}) ---\n{text[-chars:]}"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_service(name: str, args: list[str], env: dict[str, str], logdir: Path) -> Service:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Service(name, proc, log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(server: Service, api_url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"prefect server exited with {server.proc.returncode}\n{server.tail()}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"prefect server not healthy at {api_url} after {timeout_s:.0f} s\n{server.tail()}")


def prefect_server_env(home: Path, api_url: str) -> dict[str, str]:
    """The environment of a Prefect server with its own PREFECT_HOME and of its clients."""
    return {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "OREAL_HOME": str(REPO_ROOT),
            "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def start_prefect_server(env: dict[str, str], logdir: Path) -> Service:
    """`prefect server start` on the port of env's PREFECT_API_URL, once it answers."""
    api_url = env["PREFECT_API_URL"]
    port = api_url.rsplit(":", 1)[1].split("/")[0]
    server = start_service("server", [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
                           env, logdir)
    try:
        wait_healthy(server, api_url)
    except BaseException:
        server.stop()
        raise
    return server
