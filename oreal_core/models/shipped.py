"""SFT-warmed tiny policies built once and committed with the code.

The warm-up is deterministic and its result is small (~1.9 MB of weights), but it costs
minutes of CPU on every fresh clone, which is most of what a first `make demo` waited on.
So the policy for the shipped configs lives in the repository under its SFT cache key, and
that key covers the source of the modules that make it (``sft_cache_key``): change the
recipe and the key moves, the shipped copy is no longer found, and the warm-up runs again
until someone ships the new one (`oreal sft --ship`). tests/models/test_sft.py trains one
from scratch and checks it against the shipped copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SHIPPED_ROOT = Path(__file__).with_name("shipped")


def shipped_policy(name: str) -> Path | None:
    """The committed policy folder called ``name`` (``tiny-<key>``), if there is one."""
    path = SHIPPED_ROOT / name
    return path if (path / "config.json").is_file() else None


def install_policy(source: Path, dest: Path) -> None:
    """Copy a complete policy folder to ``dest`` atomically: a reader sees all of it or none."""
    staging = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging)
        if not dest.exists():
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ship_policy(policy_dir: Path) -> Path:
    """Make ``policy_dir`` the shipped policy of its key, replacing every older one."""
    SHIPPED_ROOT.mkdir(exist_ok=True)
    for old in SHIPPED_ROOT.glob("tiny-*"):
        if old.name != policy_dir.name:
            shutil.rmtree(old)
    dest = SHIPPED_ROOT / policy_dir.name
    shutil.rmtree(dest, ignore_errors=True)
    install_policy(policy_dir, dest)
    log.info("shipped %s (%s)", dest, weights_digest(dest)[:16])
    return dest


def weights_digest(policy_dir: Path) -> str:
    """sha256 over the folder's safetensors shards, in name order."""
    digest = hashlib.sha256()
    for shard in sorted(policy_dir.glob("*.safetensors")):
        digest.update(shard.read_bytes())
    return digest.hexdigest()
