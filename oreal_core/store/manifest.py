"""The two small JSON documents that make the lake trustworthy.

A **run manifest** (``run.json``) records the config hash and code version a run started
with, so a resume under another config is refused (DESIGN.md §3). A **stage manifest**
is the commit marker of one artefact: it is written only after the Parquet file is in
place, and readers and views consider an artefact to exist only when its manifest does.
Neither ever holds credentials or endpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from oreal_core.store.errors import StoreError

RUN_FORMAT = "oreal-lake-run/1"
STAGE_FORMAT = "oreal-lake-artefact/1"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@cache
def code_version() -> str:
    """Package version plus the git commit (``+dirty`` if modified) when run from a checkout."""
    try:
        version = metadata.version("oreal-pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"


@dataclass(frozen=True)
class RunManifest:
    run_id: str
    config_hash: str
    code_version: str
    created_at: str
    prompts_hash: str | None = None  # content_sha256 of data.prompts; None: synthetic, or before it was recorded
    # What the numbers depend on beyond config and code (pipeline/environment.py), at the start
    environment: dict | None = None
    format: str = RUN_FORMAT


@dataclass(frozen=True)
class StageManifest:
    run_id: str
    step: int
    table: str
    schema_version: int
    rows: int
    bytes: int
    sha256: str
    config_hash: str
    code_version: str
    created_at: str
    data_file: str  # file name next to the manifest
    format: str = STAGE_FORMAT


def content_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, or of a folder's files (an HF dataset) in order of
    their relative paths, each path hashed with its content so a rename changes the hash too."""
    if path.is_file():
        return f"sha256:{_file_sha256(path).hexdigest()}"
    total = hashlib.sha256()
    for file in sorted((f for f in path.rglob("*") if f.is_file()), key=lambda f: f.relative_to(path).as_posix()):
        total.update(file.relative_to(path).as_posix().encode() + b"\0" + _file_sha256(file).digest())
    return f"sha256:{total.hexdigest()}"


def _file_sha256(path: Path):
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest


def dump(manifest: RunManifest | StageManifest) -> bytes:
    return json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=True).encode()


M = TypeVar("M", "RunManifest", "StageManifest")


def load(cls: type[M], raw: bytes, where: str) -> M:
    """Parse a manifest, naming ``where`` if it is corrupt or of an unknown format."""
    try:
        doc = json.loads(raw)
        expected = RUN_FORMAT if cls is RunManifest else STAGE_FORMAT
        if doc.get("format") != expected:
            raise StoreError(f"{where}: manifest format {doc.get('format')!r}, expected {expected!r}")
        return cls(**doc)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"{where}: corrupt manifest: {exc}") from None
