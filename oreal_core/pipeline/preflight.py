"""Checks of a run's inputs made before the run exists: one clear error, nothing written.

The SFT warm-up, the engine start and the first stage take seconds to minutes; a lake that
cannot be written or a broken model folder found only then fails as a traceback, sometimes
after a step's samples were committed. These checks read a few bytes and fail at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from oreal_core.config import OrealConfig, StoreConfig
from oreal_core.models.sft import TINY
from oreal_core.rollout.policy_dir import check_model_dir
from oreal_core.store.errors import StorageUnavailable

WRITE_PROBE_PREFIX = ".oreal-write-probe-"


def check_run_inputs(cfg: OrealConfig) -> None:
    """Everything a training run needs that can be checked without loading a model."""
    check_lake_writable(cfg.store)
    check_run_models(cfg)


def check_run_models(cfg: OrealConfig) -> None:
    """model.policy (unless the built-in tiny one) and model.reference are loadable folders.
    The token RM has no folder of its own: it starts as a copy of the policy."""
    if cfg.model.policy != TINY:
        check_model_dir(cfg.model.policy, "model.policy")
    if cfg.model.reference is not None:
        check_model_dir(cfg.model.reference, "model.reference")


def check_lake_writable(store: StoreConfig) -> None:
    """A local lake root (or, before its first run, the folder it will be made in) accepts a
    new file. Tried by writing one, not by reading permission bits: a read-only mount refuses
    root too, and ACLs or root squash make the bits lie. S3 prefixes are not probed (a
    request, and credentials that may only allow some keys)."""
    if "://" in store.uri:
        return
    root = Path(store.uri).expanduser()
    existing = _nearest_existing(root)
    if not existing.is_dir():
        raise StorageUnavailable(f"store.uri={store.uri!r}: {existing} is not a directory, the lake cannot be made")
    try:
        handle, probe = tempfile.mkstemp(prefix=WRITE_PROBE_PREFIX, dir=existing)
    except OSError as exc:
        raise StorageUnavailable(f"store.uri={store.uri!r}: cannot write in {existing} "
                                 f"({exc.strerror or exc}); point store.uri at a writable folder") from None
    os.close(handle)
    os.unlink(probe)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a new lake is created in)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
