"""A process pool with a hard per-item timeout.

``concurrent.futures`` cannot cancel a call that is already running, so one pathological
sympy expression would pin a worker for good. Here every worker owns a pipe; an item that
overruns its deadline gets its worker killed and replaced, and the item comes back as a
:class:`TimedOut` value. The pool can be driven from any thread (math-verify's signal-based
timeouts are what breaks off the main thread; nothing here uses signals in the caller).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

_START_TIMEOUT_S = 120.0  # a spawned worker imports sympy/math-verify; 2 busy cores are slow


@dataclass(frozen=True)
class TimedOut:
    seconds: float


@dataclass(frozen=True)
class Failed:
    error: str  # the exception raised in the worker, or how the worker died


def _serve(conn: Connection, preload: tuple[str, ...]) -> None:
    for module in preload:
        importlib.import_module(module)
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the caller exited without closing the pool: nothing left to serve
            return
        if message is None:
            return
        fn, args = message
        try:
            conn.send((True, fn(*args)))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a value, the worker lives on
            conn.send((False, f"{type(exc).__name__}: {exc}"))


def _worker_env() -> dict[str, str]:
    # The child must import the same oreal_core as the caller (a worktree, not an install).
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class _Worker:
    def __init__(self, preload: tuple[str, ...]) -> None:
        mine, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oreal_core.verify.workers", str(theirs.fileno()), *preload],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=_worker_env())
        theirs.close()
        self.conn = Connection(mine.detach())
        self.ready = False
        self.task: tuple[int, float] | None = None  # (item index, deadline)

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.conn.close()


class TimeoutPool:
    """``map`` a picklable top-level function over items, each bounded by ``timeout_s``."""

    def __init__(self, workers: int, preload: Sequence[str] = ()) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: must be >= 1")
        self._preload = tuple(preload)
        self._lock = threading.Lock()
        self._workers = [_Worker(self._preload) for _ in range(workers)]
        self.restarts = 0
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not all(w.ready for w in self._workers):
            starting = [w for w in self._workers if not w.ready]
            for conn in wait([w.conn for w in starting], timeout=max(0.0, deadline - time.monotonic())):
                worker = next(w for w in starting if w.conn is conn)
                try:
                    worker.ready = conn.recv() == "ready"
                except (EOFError, OSError):
                    self.close()
                    raise RuntimeError(f"rule-check worker exited with code {worker.exitcode} while "
                                       f"starting (see its stderr above)") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"rule-check workers did not start within {_START_TIMEOUT_S:.0f}s")

    @property
    def workers(self) -> int:
        return len(self._workers)

    def map(self, fn: Callable, items: Sequence[tuple], timeout_s: float) -> list[Any]:
        """Results in item order; an item is its return value, a :class:`TimedOut` or a :class:`Failed`."""
        with self._lock:
            return self._map(fn, items, timeout_s)

    def _map(self, fn: Callable, items: Sequence[tuple], timeout_s: float) -> list[Any]:
        results: list[Any] = [None] * len(items)
        todo = deque(range(len(items)))
        while todo or any(w.task for w in self._workers):
            for worker in self._workers:
                if worker.ready and worker.task is None and todo:
                    index = todo.popleft()
                    worker.conn.send((fn, items[index]))
                    worker.task = (index, time.monotonic() + timeout_s)
            self._collect(results, timeout_s)
        return results

    def _collect(self, results: list[Any], timeout_s: float) -> None:
        busy = [w for w in self._workers if w.task or not w.ready]
        deadlines = [w.task[1] for w in busy if w.task]
        wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else _START_TIMEOUT_S
        for conn in wait([w.conn for w in busy], timeout=wait_s):
            worker = next(w for w in busy if w.conn is conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                if not worker.ready:  # an environment problem, not bad input: restarting won't help
                    raise RuntimeError(f"rule-check worker exited with code {worker.exitcode} while "
                                       f"starting (see its stderr above)") from None
                self._replace(worker, results, Failed(f"worker died (exit code {worker.exitcode})"))
                continue
            if not worker.ready:
                worker.ready = message == "ready"
                continue
            index, _ = worker.task
            ok, value = message
            results[index] = value if ok else Failed(value)
            worker.task = None
        now = time.monotonic()
        for worker in self._workers:
            if worker.task and worker.task[1] <= now:
                self._replace(worker, results, TimedOut(timeout_s))

    def _replace(self, worker: _Worker, results: list[Any], outcome: TimedOut | Failed) -> None:
        if worker.task:
            results[worker.task[0]] = outcome
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self._preload)
        self.restarts += 1

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            for worker in self._workers:
                try:
                    worker.process.wait(2)
                    worker.conn.close()
                except subprocess.TimeoutExpired:
                    worker.kill()
            self._workers = []

    def __enter__(self) -> TimeoutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), tuple(sys.argv[2:]))
