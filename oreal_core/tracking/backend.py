"""What a tracker backend does, the run it writes to, and the registry of backends by name.

A backend is imported only when a config names it, so a missing extra costs nothing until
then, and then one warning (the Tracker's), never a failed run.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

# name -> (module, class, the package extra that installs its library)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "tensorboard": ("oreal_core.tracking.tensorboard_backend", "TensorBoardBackend", "tensorboard"),
    "mlflow": ("oreal_core.tracking.mlflow_backend", "MlflowBackend", "mlflow"),
    "jsonl": ("oreal_core.tracking.jsonl_backend", "JsonlBackend", ""),
}

# The key under which a backend reports that the run's hyperparameters are already written.
PARAMS_KEY = "hparams"


@dataclass(frozen=True)
class TrackerRun:
    """The tracker run a training run writes to: one per run id, whatever the backend."""

    run_id: str
    experiment: str  # runs of one config, side by side
    folder: Path  # local data of every backend: <folder>/<backend>/...
    mlflow_uri: str | None = None  # None: an SQLite store in folder


class Backend(ABC):
    """One tracker. Methods run on the Tracker's thread for this backend, never the run's."""

    name: str

    def __init__(self, run: TrackerRun) -> None:
        self.run = run

    @abstractmethod
    def open(self) -> dict[str, int]:
        """Open the tracker run (creating it, or reopening it on a resume) and return the last
        step already written per key, PARAMS_KEY included once the parameters are written."""

    @abstractmethod
    def log_params(self, params: dict[str, str]) -> None:
        """The resolved config, flattened (``loss.kl_coef``), and its hash."""

    @abstractmethod
    def log_scalars(self, step: int, values: dict[str, float]) -> None: ...

    def log_text(self, step: int, key: str, markdown: str) -> None:  # noqa: B027 - optional for a backend
        """A text table (a few sample rollouts); backends without text leave it out."""

    @abstractmethod
    def close(self) -> None:
        """Write what is buffered and release the tracker run."""

    def stored_name(self, key: str) -> str:
        """``key`` as the backend stores it (and reports it from ``open``)."""
        return key


def backend_for(name: str, run: TrackerRun) -> Backend:
    """The backend called ``name``, its library imported now. ImportError names the extra."""
    module, cls, extra = BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), cls)(run)
    except ImportError as exc:
        hint = f"; install it with: pip install 'oreal-pipeline[{extra}]'" if extra else ""
        raise ImportError(f"tracking backend {name!r} needs a package that is missing ({exc}){hint}") from exc


def finite_or_none(value: float) -> float | None:
    """NaN and infinities as None, for stores that cannot hold them (JSON)."""
    return value if math.isfinite(value) else None
