"""Fail a vLLM call within seconds when its EngineCore process dies, whatever vLLM does.

vLLM's ``LLM.generate`` blocks in ``SyncMPClient.get_output`` (``queue.get`` without a
timeout). vLLM's own monitor thread marks the client dead and shuts it down when the
EngineCore process exits, but it never wakes a caller that is already waiting: if the
process dies (OOM killer, SIGKILL) between the caller's liveness check and its wait, the
call hangs forever without using any CPU. The hang was seen in CI; it is a race, so it
must not be left to vLLM's monitor.

:class:`EngineWatch` watches the process sentinels itself while a call is in flight. On
a death it wakes the blocked caller (an exception into the client's output queue, and
into every pending utility future for ``collective_rpc``) and the call fails with
:class:`RolloutEngineError` naming the process and its exit code.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import InvalidStateError
from contextlib import contextmanager, suppress
from multiprocessing import connection

from oreal_core.rollout.base import RolloutEngineError


class EngineDied(RuntimeError):
    """Put where the blocked vLLM caller waits, so that it wakes up."""


class EngineWatch:
    """Liveness of one ``vllm.LLM``'s EngineCore processes (none when vLLM runs in-process)."""

    def __init__(self, llm) -> None:
        self._client = llm.llm_engine.engine_core
        resources = getattr(self._client, "resources", None)
        manager = getattr(resources, "engine_manager", None)
        self._processes = list(getattr(manager, "processes", None) or [])
        self.death: str | None = None  # "EngineCore_DP0 (pid 123) exited with code -9"

    @property
    def has_processes(self) -> bool:
        """False when vLLM runs its EngineCore in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)."""
        return bool(self._processes)

    def alive(self) -> bool:
        self._reap_exited()
        return self.death is None

    def check(self) -> None:
        """Raise at once when a process already exited."""
        self._reap_exited()
        if self.death is not None:
            raise self._error("is dead")

    def _reap_exited(self) -> None:
        for proc in self._processes:
            if proc.exitcode is not None:
                self._record(proc)

    @contextmanager
    def watching(self, what: str) -> Iterator[None]:
        """Run a blocking engine call; a death during it fails the call, never hangs it."""
        self.check()
        if not self._processes:  # in-process EngineCore: nothing to watch
            yield
            return
        # The watcher waits on the sentinels and on this pipe: ending the call wakes it at
        # once, so the join costs nothing (a timed poll cost up to its period, every call).
        call_over, end_call = multiprocessing.Pipe(duplex=False)
        watcher = threading.Thread(target=self._watch, args=(call_over,), name="oreal-engine-watch", daemon=True)
        watcher.start()
        try:
            yield
        except Exception as exc:
            self._reap_exited()  # the death may surface here first (vLLM's own monitor raced ours)
            if self.death is not None:
                raise self._error(f"died during {what}") from exc
            raise
        finally:
            end_call.send_bytes(b"")
            watcher.join()
            call_over.close()
            end_call.close()

    def _watch(self, call_over: connection.Connection) -> None:
        sentinels = {proc.sentinel: proc for proc in self._processes}
        ready = connection.wait([call_over, *sentinels])
        dead = [sentinels[s] for s in ready if s is not call_over]
        if dead:
            for proc in dead:
                self._record(proc)
            self._wake_caller()

    def _record(self, proc) -> None:
        # Reap it, so that the exit code is known: its sentinel closes a moment before the
        # kernel lets it be reaped, so one poll right away can still find it running.
        deadline = time.monotonic() + 2.0
        while proc.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.death is None:
            self.death = f"{proc.name} (pid {proc.pid}) exited with code {proc.exitcode}"

    def _wake_caller(self) -> None:
        error = EngineDied(self.death)
        queue = getattr(self._client, "outputs_queue", None)
        if queue is not None:  # LLM.generate waits here
            queue.put_nowait(error)
        for future in list(getattr(self._client, "utility_results", {}).values()):  # collective_rpc waits here
            with suppress(InvalidStateError):  # its result may land at the same moment
                future.set_exception(error)

    def _error(self, what: str) -> RolloutEngineError:
        return RolloutEngineError(f"vLLM engine {what}: {self.death}; the engine must be reopened "
                                  "(a retried or resumed stage opens a new one)")
