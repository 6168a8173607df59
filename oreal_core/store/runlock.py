"""One process per run: an exclusive, non-blocking OS lock held while a session has the run open.

Two processes resuming one run would race on every stage commit (the second dies on
``ArtefactExists`` mid-step, or both train the same step). The lock is ``fcntl.flock`` on
``run.lock``: in the run's folder for a local lake, so it holds for every process that
shares the folder; for an S3 lake (no locks in object storage) in the run's checkpoint
folder, which is always local, so it holds per machine only. The OS drops the lock when
its process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from oreal_core.store import layout
from oreal_core.store.errors import RunLocked
from oreal_core.store.filesystems import make_dirs_durably
from oreal_core.store.lake import Lake

LOCK_FILE = "run.lock"


class RunLock:
    """A held lock; ``release`` (or the process's exit) gives it back."""

    def __init__(self, path: Path, handle) -> None:
        self.path = path
        self._handle = handle

    @property
    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def lock_path(lake: Lake, run_id: str, checkpoint_dir: Path) -> Path:
    """Where the run's lock lives: beside run.json locally, in the checkpoint folder for S3."""
    if lake.location.is_s3:
        return Path(checkpoint_dir) / LOCK_FILE
    return Path(lake.location.path(layout.run_dir(run_id))) / LOCK_FILE


def acquire_run_lock(lake: Lake, run_id: str, checkpoint_dir: Path) -> RunLock:
    """Take the run's lock or raise RunLocked naming the holder's pid, host and the lock file."""
    return acquire_lock(lock_path(lake, run_id, checkpoint_dir), f"run {run_id} is already being run")


def acquire_lock(path: Path, busy: str) -> RunLock:
    """Take the lock at ``path`` or raise RunLocked: ``busy`` (what holds it), then the holder's pid
    and host and the lock file. Also the retraining cycle's lineage lock (oreal_core/retrain)."""
    make_dirs_durably(str(path.parent))
    handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the lock is held
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().split() or ["?", "?"]
        handle.close()
        pid, host = (holder + ["?"])[:2]
        raise RunLocked(f"{busy} by pid {pid} on host {host} (lock file {path})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    handle.flush()
    return RunLock(path, handle)
