"""The registry's decision log in the lake: one small Parquet file per decision, committed
by a manifest created exclusively, so decisions are crash-safe and never race.

    <root>/registry/<lineage>/<seq>.manifest.json      commit marker (seq: 000001, 000002, ...)
    <root>/registry/<lineage>/<seq>-<uuid>.parquet     the decision's one row (decisions.SCHEMA)

Like a stage artefact (store/lake.py), a decision is its data file plus a manifest written
after it that records the file's name, size and sha256; a data file without a manifest (a
writer killed between the two) is invisible, and a file that does not match its manifest is
refused by name (store/integrity.py's rule: trust the manifest, not the file).

What a stage commit does not need and a decision does is **exclusivity**. Decision ``seq``
follows decision ``seq - 1``, and its manifest is *created only if absent*: a local hard
link (``link`` fails on an existing name, where ``rename`` would replace it) or an S3
conditional put (``If-None-Match: *``, which AWS S3 and MinIO honour). Two writers that
read the same state both aim at the same ``seq``; the first commits, the second gets
DecisionConflict and must re-read. The data file's name is unique per writer, so the loser's
file never replaces the winner's: it is left unreferenced and removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from oreal_core.registry.decisions import SCHEMA_VERSION, Decision, from_row, to_table
from oreal_core.registry.errors import DecisionConflict, RegistryError
from oreal_core.store import layout
from oreal_core.store.errors import StorageUnavailable, StoreError
from oreal_core.store.filesystems import StoreLocation, fsync_dir, storage_error, write_durably
from oreal_core.store.manifest import code_version, dump, utc_now

log = logging.getLogger(__name__)

REGISTRY_DIR = "registry"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT = "oreal-registry-decision/1"
_LINEAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MANIFEST_NAME = re.compile(r"([0-9]{6,})\.manifest\.json")


def check_lineage(name: object) -> str:
    """A lineage name is one path segment, as a run id is (store/layout.py)."""
    if not isinstance(name, str) or not _LINEAGE.fullmatch(name) or ".." in name:
        raise RegistryError(f"lineage {name!r}: must be 1-64 characters of letters, digits, '.', '_' or '-', "
                            "start with a letter or digit, and contain no '..'")
    return name


def lineage_dir(lineage: str) -> str:
    return f"{REGISTRY_DIR}/{check_lineage(lineage)}"


def manifest_key(lineage: str, seq: int) -> str:
    return f"{lineage_dir(lineage)}/{seq:06d}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class DecisionManifest:
    lineage: str
    seq: int
    follows: int
    data_file: str  # name next to the manifest
    bytes: int
    sha256: str
    schema_version: int
    code_version: str
    created_at: str
    format: str = FORMAT


@dataclass(frozen=True)
class Unreadable:
    """A committed decision that could not be read (a corrupt manifest or a mismatching file)."""

    lineage: str
    seq: int | None
    problem: str


class DecisionLog:
    """The decision files of one lake (local folder or S3 prefix)."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location

    def lineages(self) -> list[str]:
        infos = self._list(REGISTRY_DIR)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and _LINEAGE.fullmatch(i.base_name))

    def read(self, lineage: str) -> tuple[list[Decision], list[Unreadable]]:
        """The lineage's committed decisions in order, and those that could not be read."""
        decisions, unreadable = [], []
        for seq in self._committed_seqs(lineage):
            try:
                decisions.append(self._read_one(lineage, seq))
            except StorageUnavailable as exc:
                if self.location.is_s3:  # an outage, not a bad decision: the caller must hear of it
                    raise
                unreadable.append(Unreadable(lineage, seq, str(exc)))
            except (RegistryError, StoreError) as exc:
                unreadable.append(Unreadable(lineage, seq, str(exc)))
        return decisions, unreadable

    def read_strict(self, lineage: str) -> list[Decision]:
        """The whole log, or RegistryError: a new decision is never made on a partial history."""
        decisions, unreadable = self.read(lineage)
        if unreadable:
            raise RegistryError(f"{unreadable[0].problem}; the registry refuses new decisions in lineage "
                                f"{lineage} until it is repaired")
        seqs = [d.seq for d in decisions]
        if seqs != list(range(1, len(seqs) + 1)):
            raise RegistryError(f"lineage {lineage}: decisions {seqs} are not numbered 1..{len(seqs)} (a manifest "
                                "was removed?); refusing new decisions")
        return decisions

    def append(self, decision: Decision) -> None:
        """Commit ``decision`` as decision ``seq`` of its lineage, or raise DecisionConflict if that
        slot is taken (someone decided after the state this decision was made on)."""
        if decision.seq != decision.follows + 1:
            raise RegistryError(f"decision {decision.seq} must follow decision {decision.seq - 1}, "
                                f"not {decision.follows}")
        folder = lineage_dir(decision.lineage)
        payload = _parquet_bytes(to_table([decision]))
        data_file = f"{decision.seq:06d}-{uuid.uuid4().hex[:12]}.parquet"
        manifest = DecisionManifest(
            lineage=decision.lineage, seq=decision.seq, follows=decision.follows, data_file=data_file,
            bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(), schema_version=SCHEMA_VERSION,
            code_version=code_version(), created_at=utc_now())
        data_key = f"{folder}/{data_file}"
        self._put(data_key, payload)  # invisible until the manifest below names it
        try:
            self._create_exclusively(manifest_key(decision.lineage, decision.seq), dump(manifest))
        except DecisionConflict:
            with contextlib.suppress(OSError):
                self.location.fs.delete_file(self.location.path(data_key))
            raise

    # ------------------------------------------------------------------ reading

    def _committed_seqs(self, lineage: str) -> list[int]:
        found = (_MANIFEST_NAME.fullmatch(i.base_name) for i in self._list(lineage_dir(lineage)))
        return sorted(int(m.group(1)) for m in found if m)

    def _read_one(self, lineage: str, seq: int) -> Decision:
        where = f"{self.location.uri}/{manifest_key(lineage, seq)}"
        manifest = _load_manifest(self._get(manifest_key(lineage, seq)), where)
        if (manifest.lineage, manifest.seq) != (lineage, seq) or manifest.schema_version != SCHEMA_VERSION:
            raise RegistryError(f"{where}: names lineage {manifest.lineage} decision {manifest.seq} "
                                f"(schema v{manifest.schema_version}), not {lineage} {seq} (v{SCHEMA_VERSION})")
        data_key = f"{lineage_dir(lineage)}/{manifest.data_file}"
        if posixpath.basename(manifest.data_file) != manifest.data_file:
            raise RegistryError(f"{where}: data file {manifest.data_file!r} is not a plain name")
        payload = self._get(data_key) if self._exists(data_key) else None
        problem = _mismatch(manifest, payload)
        if problem is not None:
            raise RegistryError(f"registry: lineage {lineage} decision {seq}: {data_key} does not match its "
                                f"manifest ({problem})")
        rows = pq.read_table(pa.BufferReader(payload)).to_pylist()
        return from_row(rows[0])

    # ------------------------------------------------------------------ storage

    def _create_exclusively(self, relative: str, payload: bytes) -> None:
        if self.location.is_s3:
            _put_if_absent(self.location, relative, payload)
            return
        final = self.location.path(relative)
        staged = self.location.path(layout.STAGING_DIR, uuid.uuid4().hex, posixpath.basename(relative))
        try:
            write_durably(staged, payload)
            try:
                os.link(staged, final)  # atomic, and unlike rename it fails when the name exists
            except FileExistsError:
                raise DecisionConflict(_conflict(relative)) from None
            fsync_dir(os.path.dirname(final))
        except OSError as exc:
            raise storage_error(self.location, f"committing {relative}", exc) from None
        finally:
            with contextlib.suppress(OSError):
                self.location.fs.delete_dir(os.path.dirname(staged))

    def _put(self, relative: str, payload: bytes) -> None:
        path = self.location.path(relative)
        try:
            if not self.location.is_s3:
                write_durably(path, payload)
                return
            with self.location.fs.open_output_stream(path) as out:
                out.write(payload)
        except OSError as exc:
            raise storage_error(self.location, f"writing {relative}", exc) from None

    def _get(self, relative: str) -> bytes:
        try:
            with self.location.fs.open_input_stream(self.location.path(relative)) as src:
                return src.read()
        except OSError as exc:
            raise storage_error(self.location, f"reading {relative}", exc) from None

    def _exists(self, relative: str) -> bool:
        try:
            return self.location.fs.get_file_info(self.location.path(relative)).type == pafs.FileType.File
        except OSError as exc:
            raise storage_error(self.location, f"checking {relative}", exc) from None

    def _list(self, relative: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.location.path(relative), recursive=False, allow_not_found=True)
        try:
            return self.location.fs.get_file_info(selector)
        except OSError as exc:
            raise storage_error(self.location, f"listing {relative}", exc) from None


def _conflict(relative: str) -> str:
    lineage, name = relative.split("/")[1:3]
    return (f"lineage {lineage}: decision {int(name.split('.')[0])} was committed by someone else after this "
            "one's state was read (a racing promote or rollback?); nothing was changed: look at "
            "`oreal models` and decide again")


def _put_if_absent(location: StoreLocation, relative: str, payload: bytes) -> None:
    """S3's compare-and-set: a conditional put that fails when the key exists."""
    from botocore.exceptions import ClientError

    bucket, _, key = location.path(relative).partition("/")
    try:
        _s3_client(location).put_object(Bucket=bucket, Key=key, Body=payload, IfNoneMatch="*")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412):  # PreconditionFailed; ConditionalRequestConflict while another put is in flight
            if _s3_get(location, bucket, key) == payload:  # our own put, retried after a lost response
                return
            raise DecisionConflict(_conflict(relative)) from None
        raise storage_error(location, f"committing {relative}", exc) from None
    except Exception as exc:  # botocore's connection errors are not OSErrors
        raise storage_error(location, f"committing {relative}", exc) from None


def _s3_get(location: StoreLocation, bucket: str, key: str) -> bytes | None:
    with contextlib.suppress(Exception):
        return _s3_client(location).get_object(Bucket=bucket, Key=key)["Body"].read()
    return None


def _s3_client(location: StoreLocation):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    endpoint, creds = location.s3, location.s3.credentials
    config = Config(retries={"max_attempts": endpoint.attempts, "mode": "standard"},
                    signature_version=UNSIGNED if creds is None else None)
    return boto3.client(
        "s3", region_name=endpoint.region, config=config,
        endpoint_url=f"{endpoint.scheme}://{endpoint.host}" if endpoint.host else None,
        aws_access_key_id=creds.access_key if creds else None, aws_secret_access_key=creds.secret_key if creds else None,
        aws_session_token=creds.session_token if creds else None)


def _mismatch(manifest: DecisionManifest, payload: bytes | None) -> str | None:
    if payload is None:
        return "the data file is missing"
    if len(payload) != manifest.bytes:
        return f"size {len(payload)} != {manifest.bytes}"
    digest = hashlib.sha256(payload).hexdigest()
    if digest != manifest.sha256:
        return f"sha256 {digest[:12]}... != {manifest.sha256[:12]}..."
    return None


def _load_manifest(raw: bytes, where: str) -> DecisionManifest:
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise RegistryError(f"{where}: manifest format {doc.get('format')!r}, expected {FORMAT!r}")
        return DecisionManifest(**doc)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RegistryError(f"{where}: corrupt manifest: {exc}") from None


def _parquet_bytes(table: pa.Table) -> bytes:
    table = table.replace_schema_metadata({b"oreal.registry_schema_version": str(SCHEMA_VERSION).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()

