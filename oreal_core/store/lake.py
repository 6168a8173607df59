"""The lake's read/write API: runs, atomic stage commits, verified reads.

A stage artefact is committed in three moves so no reader ever sees half of one:
the Parquet bytes go to ``_staging/<uuid>/``, are moved to their final key, and only
then is the stage manifest (rows, schema version, config hash, sha256) moved next to
them. The manifest is the commit: a data file without one (a writer killed between the
moves) is invisible to ``read``/``artefact``/the DuckDB views and is replaced by the next
write. A committed artefact is never rewritten unless ``overwrite=True``. ``read`` checks
the file's size and sha256 against the manifest (integrity.py) before parsing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import uuid
from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from oreal_core.config import StoreConfig
from oreal_core.store import integrity, layout
from oreal_core.store.errors import (
    ArtefactExists,
    ArtefactNotFound,
    CodeVersionMismatch,
    ConfigMismatch,
    PromptsMismatch,
    RunNotFound,
    SchemaError,
    StorageUnavailable,
    StoreError,
)
from oreal_core.store.filesystems import (
    StoreLocation,
    open_location,
    rename_durably,
    storage_error,
    write_durably,
)
from oreal_core.store.integrity import Committed
from oreal_core.store.manifest import RunManifest, StageManifest, code_version, dump, load, utc_now
from oreal_core.store.records import Record, records_table
from oreal_core.store.schemas import conform, table_schema
from oreal_core.types import ArtefactRef, StepMetrics

log = logging.getLogger(__name__)


class Lake:
    """One lake (local folder or S3 prefix). Cheap to create; holds no open handles."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location

    @classmethod
    def open(cls, cfg: StoreConfig) -> Lake:
        return cls(open_location(cfg))

    # ------------------------------------------------------------------ runs

    def open_run(self, run_id: str, config_hash: str, *, config_text: str | None = None,
                 version: str | None = None, allow_code_change: bool = False,
                 prompts_hash: str | None = None, environment: dict | None = None) -> RunManifest:
        """Start a run, or resume it if its manifest records the same config hash, prompt set
        content (``prompts_hash``, see manifest.content_sha256) and code version.

        Resuming under other code (another commit, or uncommitted changes) is refused unless
        ``allow_code_change``: the run would no longer be what one version of the code produces.

        ``config_text`` (the resolved config as YAML, ``cfg.to_yaml()``) is kept beside the
        manifest as ``config.yaml`` so a refused resume can be diffed against the original.
        ``environment`` (seeds, threads, libraries, hardware) is recorded by a new run only.
        """
        key = layout.run_manifest_key(run_id)
        version = version or code_version()
        existing = self._read_manifest(RunManifest, key)
        if existing is not None:
            if existing.config_hash != config_hash:
                raise ConfigMismatch(
                    f"run {run_id!r} was started with config {existing.config_hash} and cannot resume "
                    f"under config {config_hash}; start a new run id, or restore the original config "
                    f"({self.location.uri}/{layout.run_dir(run_id)}/{layout.RUN_CONFIG} if it was recorded)"
                )
            self._check_prompts(existing, prompts_hash)
            if existing.code_version != version:
                if not allow_code_change:
                    raise CodeVersionMismatch(
                        f"run {run_id!r} was started with code {existing.code_version} and would resume under "
                        f"{version}; resume with --allow-code-change (flow parameter allow_code_change) to "
                        f"accept that, or check out {existing.code_version}")
                log.warning("run %s: resuming under code %s (started with %s)", run_id, version, existing.code_version)
            return existing
        manifest = RunManifest(run_id=run_id, config_hash=config_hash, code_version=version, created_at=utc_now(),
                               prompts_hash=prompts_hash, environment=environment)
        with self._staged() as stage_dir:
            if config_text is not None:  # before run.json: the manifest stays the commit marker
                self._put(posixpath.join(stage_dir, layout.RUN_CONFIG), config_text.encode())
                self._move(posixpath.join(stage_dir, layout.RUN_CONFIG), f"{layout.run_dir(run_id)}/{layout.RUN_CONFIG}")
            self._put(posixpath.join(stage_dir, layout.RUN_MANIFEST), dump(manifest))
            self._move(posixpath.join(stage_dir, layout.RUN_MANIFEST), key)
        return manifest

    @staticmethod
    def _check_prompts(existing: RunManifest, prompts_hash: str | None) -> None:
        """Same config, other prompt file content: the steps after the resume would train on
        other prompts than the same step indices of the uninterrupted run."""
        if prompts_hash is None or existing.prompts_hash == prompts_hash:
            return
        if existing.prompts_hash is None:  # a run.json from before prompt hashes were recorded
            log.warning("run %s records no prompt set hash (started before it was recorded); "
                        "resuming without checking the prompt file", existing.run_id)
            return
        raise PromptsMismatch(f"run {existing.run_id!r} was started with prompt set {existing.prompts_hash} "
                              f"and cannot resume with {prompts_hash}")

    def run_config(self, run_id: str) -> str | None:
        """The resolved config (YAML) a run started with, if it was recorded."""
        key = f"{layout.run_dir(run_id)}/{layout.RUN_CONFIG}"
        return self._get(key).decode() if self._exists(key) else None

    def run(self, run_id: str) -> RunManifest:
        manifest = self._read_manifest(RunManifest, layout.run_manifest_key(run_id))
        if manifest is None:
            known = self.runs()
            shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
            raise RunNotFound(f"no run {run_id!r} in lake {self.location.uri} (runs: {shown or 'none'})")
        return manifest

    def runs(self) -> list[str]:
        """Ids of the lake's runs: the folders under runs/ with a readable run.json."""
        return sorted(self.run_manifests())

    def run_manifests(self) -> dict[str, RunManifest]:
        """The manifest of every readable run. Anything else under runs/ (a junk folder such as
        .Trash-0, a run killed inside open_run before its run.json, a corrupt run.json, a
        symlink loop) is skipped with a warning naming it: one bad entry must not break every
        query, report and best-checkpoint lookup."""
        found = {}
        for info in self._list(layout.RUNS_DIR, recursive=False):
            entry = f"{self.location.uri}/{layout.RUNS_DIR}/{info.base_name}"
            try:
                manifest = self._read_manifest(RunManifest, layout.run_manifest_key(info.base_name))
            except StorageUnavailable as exc:
                if self.location.is_s3:  # an outage, not a bad entry: the caller must hear of it
                    raise
                problem = str(exc)
            except StoreError as exc:  # not a run id, or a corrupt manifest
                problem = str(exc)
            else:
                if manifest is not None:
                    found[info.base_name] = manifest
                    continue
                problem = f"no {layout.RUN_MANIFEST} (a run killed while it was being opened?)"
            log.warning("lake: skipping %s: %s", entry, problem)
        return found

    # ------------------------------------------------------------------ artefacts

    def committed(self, run_id: str | Iterable[str] | None = None) -> list[tuple[str, int, str]]:
        """(run_id, step, table) of every committed artefact of one run, of several, or of
        every readable run (``None``)."""
        return [(c.run_id, c.step, c.table) for c in self.committed_files(run_id)]

    def committed_files(self, run_id: str | Iterable[str] | None = None) -> list[Committed]:
        """The committed artefacts as ``committed`` finds them, each with its data file's size
        and mtime from the same listing (None when the data file is missing)."""
        if run_id is None:
            runs = set(self.runs())
        else:
            runs = {layout.check_run_id(r) for r in ([run_id] if isinstance(run_id, str) else run_id)}
        listing = dict(self._step_files(sorted(runs)))
        found = []
        for relative in listing:
            parsed = layout.parse_manifest_key(relative)
            if parsed is not None and parsed[0] in runs:
                data = listing.get(layout.data_key(*parsed))
                found.append(Committed(*parsed, size=None if data is None else data.size,
                                       mtime_ns=None if data is None else data.mtime_ns))
        return sorted(found, key=lambda c: (c.run_id, c.step, c.table))

    def _step_files(self, runs: list[str]) -> Iterator[tuple[str, pafs.FileInfo]]:
        """(relative path, info) of the files in the runs' step=<n>/ folders (and, on S3, a few others)."""
        if not runs:
            return
        if self.location.is_s3:  # flat keys and no links: one listing serves every run
            where = layout.run_dir(runs[0]) if len(runs) == 1 else layout.RUNS_DIR
            for info in self._list(where, recursive=True):
                yield posixpath.relpath(info.path, self.location.root), info
            return
        for run_id in runs:  # local: list only the two levels of the layout, never following a link loop
            try:
                steps = [i for i in self._list(layout.run_dir(run_id), recursive=False)
                         if i.type == pafs.FileType.Directory and i.base_name.startswith("step=")]
                for step in steps:
                    relative = posixpath.relpath(step.path, self.location.root)
                    for info in self._list(relative, recursive=False):
                        yield posixpath.relpath(info.path, self.location.root), info
            except StorageUnavailable as exc:
                log.warning("lake: skipping run %s: %s", run_id, exc)

    def data_uri(self, run_id: str, step: int, table: str) -> str:
        return self.location.uri_of(self.location.path(layout.data_key(run_id, step, table)))

    def manifest(self, run_id: str, step: int, table: str) -> StageManifest | None:
        table_schema(table)
        return self._read_manifest(StageManifest, layout.manifest_key(run_id, step, table))

    def artefact(self, run_id: str, step: int, table: str) -> ArtefactRef | None:
        """The committed artefact, or None: what a stage checks to skip itself on re-run."""
        found = self.manifest(run_id, step, table)
        return None if found is None else self._ref(found)

    def write(self, run_id: str, step: int, table: str, data: pa.Table | Sequence[Record],
              *, overwrite: bool = False) -> ArtefactRef:
        """Commit one stage artefact atomically and return its reference."""
        spec = table_schema(table)
        run = self.run(run_id)
        layout.check_step(step)
        if not isinstance(data, pa.Table):
            stray = sorted({r.step for r in data if isinstance(r, StepMetrics)} - {step})
            if stray:
                raise SchemaError(f"metrics of step(s) {stray} written as step {step}")
            data = records_table(table, run_id, data)
        data = conform(table, data)
        self._check_run_column(data, run_id)
        final_manifest = layout.manifest_key(run_id, step, table)
        if self._exists(final_manifest):
            if not overwrite:
                raise ArtefactExists(f"run {run_id!r} step {step} table {table!r} is already committed "
                                     "(pass overwrite=True to replace it)")
            self._delete(final_manifest)  # uncommit first: readers never see new data under an old manifest
        payload = _parquet_bytes(data, spec.version)
        manifest = StageManifest(
            run_id=run_id, step=step, table=table, schema_version=spec.version, rows=data.num_rows,
            bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(), config_hash=run.config_hash,
            code_version=code_version(), created_at=utc_now(), data_file=f"{table}{layout.DATA_SUFFIX}",
        )
        with self._staged() as stage_dir:
            staged_data = posixpath.join(stage_dir, manifest.data_file)
            staged_manifest = posixpath.join(stage_dir, f"{table}{layout.MANIFEST_SUFFIX}")
            self._put(staged_data, payload)
            self._put(staged_manifest, dump(manifest))
            self._move(staged_data, layout.data_key(run_id, step, table))
            self._move(staged_manifest, final_manifest)
        return self._ref(manifest)

    def read(self, run_id: str, step: int, table: str, *, verify: bool = True) -> pa.Table:
        """A committed artefact as a table with ``step`` added back as an int64 column."""
        self.run(run_id)
        manifest = self.manifest(run_id, step, table)
        if manifest is None:
            raise ArtefactNotFound(f"run {run_id!r} step {step} has no committed {table!r} artefact")
        spec = table_schema(table)
        if manifest.schema_version != spec.version:
            raise SchemaError(f"run {run_id!r} step {step} table {table!r} was written with schema "
                              f"v{manifest.schema_version}; this code reads v{spec.version}")
        key = layout.data_key(run_id, step, table)
        if not self._exists(key):
            raise integrity.mismatch(run_id, step, table, "the data file is missing")
        payload = self._get(key)
        if verify:
            integrity.check_payload(manifest, payload)
        try:
            data = pq.read_table(pa.BufferReader(payload))
        except (pa.ArrowException, OSError) as exc:  # only with verify=False: a verified file parses
            raise integrity.mismatch(run_id, step, table, f"not readable as Parquet: {exc}") from None
        return data.add_column(1, "step", pa.array([step] * data.num_rows, pa.int64()))

    def read_ref(self, ref: ArtefactRef, *, verify: bool = True) -> pa.Table:
        return self.read(ref.run_id, ref.step, ref.stage, verify=verify)

    # ------------------------------------------------------------------ documents

    def put_document(self, key: str, payload: bytes) -> str:
        """Commit one small file outside the runs (a retraining cycle's records) whole or not at
        all: staged, then moved to ``key``. Returns its URI."""
        with self._staged() as stage_dir:
            staged = posixpath.join(stage_dir, posixpath.basename(key))
            self._put(staged, payload)
            self._move(staged, key)
        return self.location.uri_of(self.location.path(key))

    def get_document(self, key: str) -> bytes | None:
        """A file committed by put_document, or None when there is none."""
        return self._get(key) if self._exists(key) else None

    def list_documents(self, prefix: str) -> list[str]:
        """Keys of the files under ``prefix`` (recursive), relative to the lake's root, sorted."""
        root = self.location.path("")
        return sorted(info.path[len(root):].lstrip("/") for info in self._list(prefix, recursive=True)
                      if info.type == pafs.FileType.File)

    # ------------------------------------------------------------------ internals

    def _ref(self, manifest: StageManifest) -> ArtefactRef:
        return ArtefactRef(run_id=manifest.run_id, step=manifest.step, stage=manifest.table,
                           uri=self.data_uri(manifest.run_id, manifest.step, manifest.table),
                           rows=manifest.rows, checksum=f"sha256:{manifest.sha256}")

    @staticmethod
    def _check_run_column(data: pa.Table, run_id: str) -> None:
        others = set(data.column("run_id").unique().to_pylist()) - {run_id}
        if others:
            raise SchemaError(f"rows for run {run_id!r} carry other run ids {sorted(others)[:5]}")

    @contextlib.contextmanager
    def _staged(self) -> Iterator[str]:
        stage_dir = f"{layout.STAGING_DIR}/{uuid.uuid4().hex}"
        try:
            yield stage_dir
        finally:
            with contextlib.suppress(OSError):
                self.location.fs.delete_dir(self.location.path(stage_dir))

    def _io(self, what: str):
        return _translate_errors(self.location, what)

    def _list(self, relative: str, *, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.location.path(relative), recursive=recursive, allow_not_found=True)
        with self._io(f"listing {relative}"):
            return self.location.fs.get_file_info(selector)

    def _exists(self, relative: str) -> bool:
        with self._io(f"checking {relative}"):
            return self.location.fs.get_file_info(self.location.path(relative)).type == pafs.FileType.File

    def _put(self, relative: str, payload: bytes) -> None:
        path = self.location.path(relative)
        with self._io(f"writing {relative}"):
            if not self.location.is_s3:  # fsynced: the rename that commits it must not outrun the bytes
                write_durably(path, payload)
                return
            with self.location.fs.open_output_stream(path) as out:
                out.write(payload)

    def _get(self, relative: str) -> bytes:
        with self._io(f"reading {relative}"), self.location.fs.open_input_stream(self.location.path(relative)) as src:
            return src.read()

    def read_blocks(self, relative: str, size: int) -> Iterator[bytes]:
        """A file's bytes in blocks of ``size``: hashed without holding a whole file in memory."""
        with self._io(f"reading {relative}"), self.location.fs.open_input_stream(self.location.path(relative)) as src:
            while block := src.read(size):
                yield block

    def _move(self, src: str, dst: str) -> None:
        dst_path = self.location.path(dst)
        with self._io(f"committing {dst}"):
            if not self.location.is_s3:  # local rename needs the parent; S3 has no directories
                rename_durably(self.location.path(src), dst_path)
                return
            self.location.fs.move(self.location.path(src), dst_path)

    def _delete(self, relative: str) -> None:
        with self._io(f"deleting {relative}"):
            self.location.fs.delete_file(self.location.path(relative))

    def _read_manifest(self, cls, relative: str):
        if not self._exists(relative):
            return None
        return load(cls, self._get(relative), f"{self.location.uri}/{relative}")


@contextlib.contextmanager
def _translate_errors(location: StoreLocation, what: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except OSError as exc:  # pyarrow's S3 and local errors; S3 ones come after the SDK's retries
        raise storage_error(location, what, exc) from None


def _parquet_bytes(data: pa.Table, version: int) -> bytes:
    """Serialise in memory: the checksum is of exactly the bytes that get stored."""
    data = data.replace_schema_metadata({**(data.schema.metadata or {}), b"oreal.schema_version": str(version).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, compression="zstd", row_group_size=64 * 1024)
    return sink.getvalue().to_pybytes()
