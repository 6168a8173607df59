"""Stopping a run when told to: SIGINT (Ctrl-C), SIGTERM (how Kubernetes preempts a pod), or
Prefect's API silent for ``monitor.prefect_api_timeout_s``.

Why not the defaults. Ctrl-C reaches every process of the terminal's group: Prefect's
temporary API server dies with it while the flow engine catches the KeyboardInterrupt and
retries the dead API (issue 30: still running after 90 s). SIGTERM did exit, but left that
server (uvicorn) running and printed Prefect's crash report. And a dead or frozen API server
made the run retry without end.

Here the first such event stops the run: one line saying why, where and how to resume;
every child process (engines, rule workers, Prefect's temporary server, training-group
ranks) terminated, then killed after a grace period; the process exits. Nothing partial is
left behind: a stage's artefact is committed by one atomic move of its manifest
(store/lake.py), a checkpoint by one rename, so the work under way is redone by
`oreal resume`.

The signal is taken off the process's wakeup fd by a thread of its own, not by a Python
handler: a handler runs only when the main thread is back in the interpreter, which a long
C call (a training step, a wait on an engine) can postpone for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import NoReturn

import httpx
import psutil
from prefect.exceptions import TerminationSignal

from flows.console import terminal_stderr
from oreal_core.pipeline import position

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as a shell reports it
API_LOST_EXIT = 75  # EX_TEMPFAIL: try again once the API is back
CHILD_GRACE_S = 10.0  # SIGTERM to SIGKILL for the children; the whole stop stays well under 30 s
STOP_WAIT_S = 30.0  # how long the flow's own unwinding waits for a stop under way to exit

class RunStopper:
    """While entered, SIGINT/SIGTERM and a silent Prefect API stop the run (module docstring).

    ``resume`` is the command that continues the run; ``api_url`` the Prefect API to watch
    (None or ``api_timeout_s`` 0: not watched). Entered inside another (a retraining cycle's
    training run), it does nothing: the outermost one owns the process's signals and says how
    to continue what it runs."""

    _outermost: RunStopper | None = None

    def __init__(self, resume: str, api_url: str | None = None, api_timeout_s: float = 0.0) -> None:
        self.resume, self.api_url, self.api_timeout_s = resume, api_url, api_timeout_s
        self._stopping = threading.Lock()
        self._done = threading.Event()
        self._previous: dict[int, object] = {}
        self._wakeup: tuple[int, int] | None = None
        self._old_wakeup_fd = -1

    def __enter__(self) -> RunStopper:
        self._nested = RunStopper._outermost is not None
        if self._nested:
            return self
        RunStopper._outermost = self
        self._terminal = os.dup(terminal_stderr())  # the console points fd 2 at the run's log
        if threading.current_thread() is threading.main_thread():
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            self._wakeup = read_fd, write_fd
            self._old_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            # A Python-level handler must be set for the C handler to write to the wakeup fd;
            # it does nothing itself (no KeyboardInterrupt in the middle of a stage).
            self._previous = {sig: signal.signal(sig, _ignore_here) for sig in SIGNALS}
            threading.Thread(target=self._watch_signals, name="oreal-stop-signals", daemon=True).start()
        if self.api_url and self.api_timeout_s > 0:
            threading.Thread(target=self._watch_api, name="oreal-stop-api", daemon=True).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._nested:
            return
        if self._stopping.locked() or isinstance(exc, TerminationSignal):
            # A stop is under way on its thread, which ends the process. Unwinding here would
            # race it: in a subflow Prefect's SIGTERM bridge raises TerminationSignal in this
            # thread, and the outer flow's engine then re-sends SIGTERM under the default
            # handler, so the process died as -15 before its exit code 143 (issue 31's runs).
            time.sleep(STOP_WAIT_S)
        RunStopper._outermost = None
        self._done.set()
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)
            os.close(self._wakeup[1])  # the signal thread's read returns b"" and it ends
        os.close(self._terminal)

    def stop(self, cause: str, exit_code: int) -> NoReturn:
        """Say where the run stopped, end every child process and exit (once; later calls wait)."""
        self._stopping.acquire()
        line = stop_line(cause, position.current(), self.resume)
        # Once to the terminal and once to the run's log, where the console has moved fd 2
        # (not through logging: the console's status handler would print it twice).
        for fd in {_file_identity(fd): fd for fd in (self._terminal, 2)}.values():
            with contextlib.suppress(OSError):
                os.write(fd, f"\n{line}\n".encode())
        end_children(CHILD_GRACE_S)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(exit_code)

    def _watch_signals(self) -> None:
        read_fd = self._wakeup[0]
        try:
            while data := os.read(read_fd, 64):
                for signum in data:
                    if signum in EXIT_CODES:
                        self.stop(signal.Signals(signum).name, EXIT_CODES[signum])
        finally:
            os.close(read_fd)

    def _watch_api(self) -> None:
        every = min(10.0, self.api_timeout_s / 3)
        last_answer = time.monotonic()
        while not self._done.wait(every):
            if api_answers(self.api_url, timeout_s=min(5.0, every)):
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer >= self.api_timeout_s and not self._done.is_set():
                self.stop(f"Prefect's API at {self.api_url} has not answered for {self.api_timeout_s:.0f} s",
                          API_LOST_EXIT)

def _file_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino

def _ignore_here(signum: int, frame) -> None:
    """The stop happens on the signal thread (RunStopper._watch_signals)."""

def stop_line(cause: str, where: position.Position, resume: str) -> str:
    if where.run_id is None:  # the run was never created in the lake
        return f"oreal: stopped ({cause}) {where.describe()}; nothing was committed: run the command again"
    return f"oreal: stopped ({cause}) {where.describe()}; what was committed is kept: `{resume}` continues"

def api_answers(api_url: str, timeout_s: float) -> bool:
    """Whether Prefect's API answers its health check within ``timeout_s`` (connect and read)."""
    headers = {}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", headers=headers, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False

def end_children(grace_s: float) -> None:
    """SIGTERM to every descendant process, SIGKILL to those still alive after ``grace_s``."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=5)
