"""The ``tracking`` section: live experiment trackers fed from the run's process (docs/tracking.md).

Trackers only watch: the section is left out of the config hash, so a run can be resumed
with a tracker added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from oreal_core.config.checks import _check

# Each is imported only when named (oreal_core/tracking/backends.py); the package extras:
# tensorboard -> oreal-pipeline[tensorboard], mlflow -> oreal-pipeline[mlflow], jsonl -> none.
BackendName = Literal["tensorboard", "mlflow", "jsonl"]


@dataclass(frozen=True)
class TrackingConfig:
    """Which trackers receive the run's metrics while it runs, and where their data goes."""

    backends: tuple[BackendName, ...] = ()
    # TensorBoard event files, the MLflow SQLite store and the JSONL files go under this folder;
    # null: <store.uri>/tracking for a local lake, runs/tracking beside an S3 one.
    dir: str | None = None
    mlflow_uri: str | None = None  # null: sqlite:///<dir>/mlflow.db; or a tracking server, http://host:5000
    experiment: str | None = None  # MLflow experiment name; null: run.name (runs of a config side by side)
    # Entries waiting for one backend; beyond it new ones are dropped and counted, so a slow or
    # hung tracker costs the run a bounded amount of memory and never a wait.
    queue_size: int = 1000
    # At the run's end, how long the backends together may take to write their backlog: normally
    # milliseconds; the bound is for a tracking server that hangs. A stopped run (flows/stop.py)
    # exits at once; its resume catches the trackers up from the lake.
    close_timeout_s: float = 10.0
    sample_rollouts: int = 4  # rollouts per step shown as a text table where the backend has one (0 = none)

    def __post_init__(self) -> None:
        _check(len(set(self.backends)) == len(self.backends), "backends", self.backends, "names a backend twice")
        _check(self.dir is None or bool(self.dir), "dir", self.dir, "must be non-empty (or null)")
        _check(self.queue_size >= 1, "queue_size", self.queue_size, "must be >= 1")
        _check(self.close_timeout_s >= 0, "close_timeout_s", self.close_timeout_s, "must be >= 0")
        _check(self.sample_rollouts >= 0, "sample_rollouts", self.sample_rollouts, "must be >= 0")
