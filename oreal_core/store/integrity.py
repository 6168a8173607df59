"""Is a committed file what its stage manifest says? (DESIGN.md §10 "Integrity").

Every reader trusts the manifest, not the file. A file replaced by another valid Parquet
file, truncated, or with a flipped bit reads without complaint in DuckDB and pyarrow more
often than not (a flipped byte in a page decodes to other values), so the only sound check
is the manifest's own: the file's size and the sha256 of its bytes.

- ``Lake.read`` reads a file whole and checks both (``check_payload``); ``oreal resume``,
  the stages, eval's stored records and the training group read through it.
- The DuckDB views (``checked_artefacts``) check every artefact's size against the
  listing, and hash the files of the tables a query can read. A table's footer is not
  enough: two steps' verdicts of the same shape have byte-identical footers and sizes.
  On a local lake hashes are cached in-process by (uri, size, mtime in ns), so several
  queries in one process hash each file once.

A file that fails is refused by one ``ChecksumMismatch`` line naming run, step, table and
file; the views skip it with a warning that says the results exclude it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from oreal_core.store import layout
from oreal_core.store.errors import ChecksumMismatch, StorageUnavailable, StoreError
from oreal_core.store.manifest import StageManifest

log = logging.getLogger(__name__)

# Files are hashed and manifests read in parallel: hashlib and pyarrow's reads release the
# GIL, and on S3 each manifest is a request whose latency would otherwise add up.
_WORKERS = 8
_BLOCK = 4 << 20

_digests: dict[tuple[str, int, int], str] = {}  # (uri, size, mtime_ns) -> sha256 hex
_digests_lock = threading.Lock()


def mismatch(run_id: str, step: int, table: str, problem: str) -> ChecksumMismatch:
    """The one line every reader gives for a file that is not what its manifest says."""
    key = layout.data_key(run_id, step, table)
    return ChecksumMismatch(f"lake: run {run_id} step {step} table {table}: {key} does not match its manifest "
                            f"({problem})")


def check_payload(manifest: StageManifest, payload: bytes) -> None:
    """Raise ChecksumMismatch unless ``payload`` is exactly the committed bytes."""
    _check_size(manifest, len(payload))
    _check_digest(manifest, hashlib.sha256(payload).hexdigest())


def _check_size(manifest: StageManifest, size: int | None) -> None:
    if size is None:
        raise mismatch(manifest.run_id, manifest.step, manifest.table, "the data file is missing")
    if size != manifest.bytes:
        raise mismatch(manifest.run_id, manifest.step, manifest.table, f"size {size} != {manifest.bytes}")


def _check_digest(manifest: StageManifest, digest: str) -> None:
    if digest != manifest.sha256:
        raise mismatch(manifest.run_id, manifest.step, manifest.table,
                       f"sha256 {digest[:12]}... != {manifest.sha256[:12]}...")


@dataclass(frozen=True)
class Committed:
    """One committed artefact as the lake's listing shows it (size, mtime of its data file)."""

    run_id: str
    step: int
    table: str
    size: int | None  # None: the data file is missing
    mtime_ns: int | None


@dataclass(frozen=True)
class Skipped:
    run_id: str
    step: int
    table: str
    problem: str  # the one-line error


def checked_artefacts(lake, artefacts: Iterable[Committed], hashed: Collection[str]
                      ) -> tuple[list[Committed], list[Skipped]]:
    """The artefacts that match their manifests, and those skipped (each logged as a warning).

    Every artefact's size is checked; those of the tables in ``hashed`` also by sha256."""
    artefacts = list(artefacts)
    if not artefacts:
        return [], []
    with ThreadPoolExecutor(min(_WORKERS, len(artefacts))) as pool:
        problems = list(pool.map(lambda a: _problem(lake, a, a.table in hashed), artefacts))
    good, skipped = [], []
    for artefact, problem in zip(artefacts, problems, strict=True):
        if problem is None:
            good.append(artefact)
            continue
        skipped.append(Skipped(artefact.run_id, artefact.step, artefact.table, problem))
        log.warning("%s; the %s view skips it, so results exclude run %s step %s of %s", problem,
                    artefact.table, artefact.run_id, artefact.step, artefact.table)
    return good, skipped


def _problem(lake, artefact: Committed, hashed: bool) -> str | None:
    try:
        manifest = lake.manifest(artefact.run_id, artefact.step, artefact.table)
        if manifest is None:  # uncommitted since the listing (an overwrite in flight)
            raise StoreError(f"lake: run {artefact.run_id} step {artefact.step} table {artefact.table}: "
                             "its manifest went away while the lake was read")
        _check_size(manifest, artefact.size)
        if hashed:
            _check_digest(manifest, _file_sha256(lake, artefact))
    except StorageUnavailable as exc:
        if lake.location.is_s3:  # an outage, not a bad artefact: the caller must hear of it
            raise
        return str(mismatch(artefact.run_id, artefact.step, artefact.table, f"unreadable: {exc}"))
    except StoreError as exc:  # a mismatch, or a corrupt manifest (which names its file)
        return str(exc)
    return None


def _file_sha256(lake, artefact: Committed) -> str:
    uri = lake.data_uri(artefact.run_id, artefact.step, artefact.table)
    # S3's LastModified has whole seconds: a file replaced within the second would keep its key
    cacheable = artefact.mtime_ns is not None and not lake.location.is_s3
    cache_key = (uri, artefact.size, artefact.mtime_ns) if cacheable else None
    with _digests_lock:
        known = _digests.get(cache_key) if cache_key else None
    if known is not None:
        return known
    digest = hashlib.sha256()
    for block in lake.read_blocks(layout.data_key(artefact.run_id, artefact.step, artefact.table), _BLOCK):
        digest.update(block)
    found = digest.hexdigest()
    if cache_key is not None:
        with _digests_lock:
            _digests[cache_key] = found
    return found
