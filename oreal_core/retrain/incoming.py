"""New prompt files for retraining: where they arrive, how they are added, read and checked.

The incoming place is ``retrain.incoming`` (a local folder or an ``s3://`` prefix, read with
the store's endpoint and credentials) or, by default, the lake's
``retrain/<lineage>/incoming/``. Files there are JSONL/Parquet prompt files (``question`` and
``gold_answer``, or a benchmark's ``problem``/``answer``; oreal_core/data/records.py). Every
cycle reads all of them: a prompt the champion has since mastered is dropped by the pass-rate
bands, one it still fails stays useful. ``oreal prompts add`` checks a file (a bad row is
refused as ``file:line``) before it lands there, so a cycle never finds half a file: the add
is one staged write and a move.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from oreal_core.config import OrealConfig
from oreal_core.data.records import PromptDataError, PromptRecord, read_prompt_records
from oreal_core.registry.log import check_lineage
from oreal_core.store import Lake
from oreal_core.store.filesystems import open_location

PROMPT_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class IncomingFile:
    """One prompt file as a cycle read it."""

    name: str  # key under the incoming place
    uri: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class Incoming:
    uri: str  # the incoming place
    files: tuple[IncomingFile, ...]
    records: tuple[PromptRecord, ...]  # every file's rows, files in name order; source = "<uri>:<line>"


def incoming_place(cfg: OrealConfig, lineage: str) -> tuple[Lake, str]:
    """The lake the incoming files live in and their prefix inside it."""
    if cfg.retrain.incoming is None:
        return Lake.open(cfg.store), f"retrain/{check_lineage(lineage)}/incoming"
    return Lake(open_location(dataclasses.replace(cfg.store, uri=cfg.retrain.incoming))), ""


def read_incoming(cfg: OrealConfig, lineage: str) -> Incoming:
    """Every prompt file in the incoming place, hashed and checked; a malformed one raises
    PromptDataError naming the file's URI and line, before anything is trained."""
    lake, prefix = incoming_place(cfg, lineage)
    files, records = [], []
    for key in prompt_keys(lake, prefix):
        payload = lake.get_document(key) or b""
        uri = lake.location.uri_of(lake.location.path(key))
        rows = _records(payload, key, uri)
        files.append(IncomingFile(name=key.removeprefix(prefix).lstrip("/"), uri=uri,
                                  sha256=hashlib.sha256(payload).hexdigest(), rows=len(rows)))
        records += rows
    return Incoming(lake.location.uri_of(lake.location.path(prefix)), tuple(files), tuple(records))


def prompt_keys(lake: Lake, prefix: str) -> list[str]:
    """Prompt files under ``prefix``, skipping hidden and staging paths (``.x``, ``_staging/``)."""
    def visible(key: str) -> bool:
        return not any(part.startswith((".", "_")) for part in PurePosixPath(key).parts)
    return [k for k in lake.list_documents(prefix) if k.endswith(PROMPT_SUFFIXES) and visible(k)]


def add_prompt_file(cfg: OrealConfig, lineage: str, path: str | Path) -> IncomingFile:
    """Check ``path`` and copy it into the incoming place as ``<UTC time>-<sha8>-<name>``.

    The name sorts by arrival; a file already there with the same content is not added twice."""
    path = Path(path)
    if path.suffix not in PROMPT_SUFFIXES:
        raise PromptDataError(f"{path}: a prompt file must be {' or '.join(PROMPT_SUFFIXES)}")
    records, _ = read_prompt_records(path)  # file:line errors, before anything is copied
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    lake, prefix = incoming_place(cfg, lineage)
    for key in prompt_keys(lake, prefix):
        if f"-{digest[:8]}-" in key and hashlib.sha256(lake.get_document(key) or b"").hexdigest() == digest:
            return IncomingFile(name=key.removeprefix(prefix).lstrip("/"),
                                uri=lake.location.uri_of(lake.location.path(key)), sha256=digest, rows=len(records))
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{digest[:8]}-{path.name}"
    uri = lake.put_document(f"{prefix}/{name}" if prefix else name, payload)
    return IncomingFile(name=name, uri=uri, sha256=digest, rows=len(records))


def _records(payload: bytes, key: str, uri: str) -> list[PromptRecord]:
    """Parse through a local copy (the readers take paths); errors and sources name ``uri``."""
    with tempfile.TemporaryDirectory(prefix="oreal-incoming-") as tmp:
        local = Path(tmp) / PurePosixPath(key).name
        local.write_bytes(payload)
        try:
            records, _ = read_prompt_records(local)
        except PromptDataError as exc:
            raise PromptDataError(str(exc).replace(str(local), uri)) from None
    return [dataclasses.replace(r, source=r.source.replace(str(local), uri)) for r in records]
