"""The fan-out to the run's tracker backends, off the run's thread.

Each backend gets a bounded queue and a thread of its own: the run only enqueues (a few
microseconds), so a slow tracker never slows a step and a hung one never blocks another
backend. What cannot be queued is dropped and counted (one warning when it starts, the total
at the end). A backend that cannot be imported or opened, or raises on any call, gives one
warning and is dropped for the rest of the run; the run goes on either way.

Steps are written once per tracker run: each backend reports at open the last step it holds
per key, and an entry at or before it is skipped, so a step replayed after a resume (or
logged again from the lake) never appears twice.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from oreal_core.tracking.backend import PARAMS_KEY, Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    values: dict[str, str]


@dataclass(frozen=True)
class Scalars:
    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class Text:
    step: int
    key: str
    markdown: str | Callable[[], str | None]  # a callable runs on the backend's thread (None: no text)


Entry = Params | Scalars | Text
# since -> (step, values) of the steps the run committed from ``since`` on, for a backend that
# missed them (the run was killed before they reached it, or tracking was added on a resume)
History = Callable[[int], Iterable[tuple[int, dict[str, float]]]]
_CLOSE = object()  # the end of a backend's queue


class BackendWorker:
    """One backend behind its queue and thread. ``make`` runs on that thread (imports included)."""

    def __init__(self, name: str, make: Callable[[], Backend], queue_size: int, history: History | None) -> None:
        self.name = name
        self.make = make
        self.history = history
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.queue_size = queue_size
        self.dropped = 0
        self.failed = False
        self.logged: dict[str, int] = {}  # touched by the worker thread only
        self.backend: Backend | None = None
        self.thread = threading.Thread(target=self._serve, name=f"tracking-{name}", daemon=True)
        self.thread.start()

    def put(self, entry: Entry) -> None:
        if self.failed:
            return
        try:
            self.queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("tracking backend %s falls behind: its queue of %d entries is full; newer entries "
                            "are dropped until it catches up (counted, total at the run's end)",
                            self.name, self.queue_size)

    def _serve(self) -> None:
        try:
            self.backend = self.make()
            self.logged = self.backend.open()
        except Exception as exc:  # noqa: BLE001 - any failure of a tracker is the tracker's, not the run's
            self._fail("cannot be opened", exc)
        if not self.failed and self.history is not None:
            self._catch_up()
        while (entry := self.queue.get()) is not _CLOSE:
            if not self.failed:
                try:
                    self._write(entry)
                except Exception as exc:  # noqa: BLE001
                    self._fail("failed", exc)
            self.queue.task_done()
        self.queue.task_done()
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # noqa: BLE001
                self._fail("failed to close", exc)

    def _catch_up(self) -> None:
        """Write the steps the backend missed (from its last step on: a kill may have cut one
        short); the per-key check leaves out what it holds."""
        since = max((step for key, step in self.logged.items() if key != PARAMS_KEY), default=0)
        try:
            for step, values in self.history(since):
                self._write(Scalars(step, values))
        except Exception as exc:  # noqa: BLE001
            self._fail("could not catch up with the run's earlier steps", exc)

    def _write(self, entry: Entry) -> None:
        backend = self.backend
        if isinstance(entry, Params):
            if PARAMS_KEY not in self.logged:
                backend.log_params(entry.values)
                self.logged[PARAMS_KEY] = 0
        elif isinstance(entry, Scalars):
            fresh = {k: v for k, v in entry.values.items() if entry.step > self.logged.get(backend.stored_name(k), -1)}
            if fresh:
                backend.log_scalars(entry.step, fresh)
                self.logged.update((backend.stored_name(k), entry.step) for k in fresh)
        elif entry.step > self.logged.get(backend.stored_name(entry.key), -1):
            markdown = entry.markdown() if callable(entry.markdown) else entry.markdown
            if markdown is not None:
                backend.log_text(entry.step, entry.key, markdown)
                self.logged[backend.stored_name(entry.key)] = entry.step

    def _fail(self, what: str, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            log.warning("tracking backend %s %s (%s: %s); the run goes on without it",
                        self.name, what, type(exc).__name__, exc)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once every entry queued so far is written (or skipped)."""
        deadline = time.monotonic() + timeout_s
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.queue.unfinished_tasks

    def request_close(self, deadline: float) -> None:
        """Queue the end after the backlog (waiting, until ``deadline``, for room in a full queue)."""
        with contextlib.suppress(queue.Full):  # a hung backend: finish() says what it left
            self.queue.put(_CLOSE, timeout=max(deadline - time.monotonic(), 0.0))

    def finish(self, deadline: float) -> None:
        self.thread.join(max(deadline - time.monotonic(), 0.0))
        if self.thread.is_alive():  # a daemon thread: left behind, it never holds the process
            log.warning("tracking backend %s did not write its backlog in time; %d entries left unwritten",
                        self.name, self.queue.qsize())
        if self.dropped:
            log.warning("tracking backend %s dropped %d entries it could not keep up with", self.name, self.dropped)


class Tracker:
    """Fans each entry out to every backend's queue; a no-op without backends."""

    def __init__(self, makers: dict[str, Callable[[], Backend]], queue_size: int = 1000,
                 close_timeout_s: float = 10.0, history: History | None = None) -> None:
        self.workers = [BackendWorker(name, make, queue_size, history) for name, make in makers.items()]
        self.close_timeout_s = close_timeout_s

    def log_params(self, values: dict[str, str]) -> None:
        self._put(Params(dict(values)))

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        self._put(Scalars(step, dict(values)))

    def log_text(self, step: int, key: str, markdown: str | Callable[[], str | None]) -> None:
        self._put(Text(step, key, markdown))

    def _put(self, entry: Entry) -> None:
        for worker in self.workers:
            worker.put(entry)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        return all(worker.wait_idle(timeout_s) for worker in self.workers)

    def close(self) -> None:
        """Let every backend write its backlog, all within one ``close_timeout_s``."""
        deadline = time.monotonic() + self.close_timeout_s
        for worker in self.workers:
            worker.request_close(deadline)
        for worker in self.workers:
            worker.finish(deadline)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
