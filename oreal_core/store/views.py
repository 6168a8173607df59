"""DuckDB over the lake: one view per table spanning every run and step.

Views list only *committed* artefacts (those with a stage manifest), so a write in
flight or a crashed one is never seen, and of those only the ones that match their manifest
(integrity.py): a swapped, truncated or damaged file is skipped with a warning naming it,
and the other artefacts and tables answer as before. ``step`` comes from the ``step=<n>`` Hive
partition; once a table's schema is past v1, ``union_by_name`` lets its view span
artefacts of older versions that lack a newer column. For ``s3://`` lakes the httpfs extension is loaded from the
``duckdb-extension-httpfs`` wheel (never downloaded) and the store's credentials become a
temporary DuckDB secret that lives only in this connection.

The connection is then sandboxed: file access is limited to the lake and the configuration
is locked, so a query can read the lake and nothing else. A local lake allows its root folder
(DuckDB resolves ``..`` in local paths). An S3 lake allows exactly its committed data files:
DuckDB matches ``allowed_directories`` against an s3:// URL as a plain string prefix while the
HTTP layer resolves ``..``, so ``s3://b/lake/../other/x`` would pass a prefix check and read
outside the lake, however the string was built.

Three scalar functions of oreal_core.verify.signatures are registered on every connection, so
the reward-hacking signatures that have no exact SQL spelling (answer normalisation, brace
matching, token n-grams) are queried with the very code that computes the health metrics:
``oreal_distinct_boxed(response)``, ``oreal_boxed_without_work(response)`` and
``oreal_repeated_ngram_ratio(token_ids)`` (canned.SIGNATURES uses them).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections import defaultdict
from collections.abc import Collection

import duckdb
import pyarrow as pa
from duckdb.sqltypes import BOOLEAN, DOUBLE, INTEGER, VARCHAR

from oreal_core.registry.views import REGISTRY_VIEWS, create_registry_views
from oreal_core.store.errors import StorageUnavailable
from oreal_core.store.filesystems import StoreLocation, redact
from oreal_core.store.integrity import Committed, Skipped, checked_artefacts
from oreal_core.store.lake import Lake
from oreal_core.store.manifest import RunManifest
from oreal_core.store.schemas import TABLES
from oreal_core.verify import signatures

VIEWS = (*TABLES, "runs", *REGISTRY_VIEWS)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def connect(lake: Lake, hashed: Collection[str] = TABLES) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with the lake's views; the caller closes it.

    Only artefacts that match their manifests are in the views (integrity.checked_artefacts):
    every one by size, those of the tables in ``hashed`` also by sha256. A caller that knows
    which tables it reads (run_query) hashes only those; a query cannot read a table it does
    not name, and a file that fails is skipped with a warning, never breaking another view."""
    return open_views(lake, hashed)[0]


def open_views(lake: Lake, hashed: Collection[str] = TABLES) -> tuple[duckdb.DuckDBPyConnection, list[Skipped]]:
    """``connect``, plus the artefacts its views skip because they do not match their manifests."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    # duckdb 1.5.5 fails with an INTERNAL error ("Attempted to access index N within vector
    # of size N") on min/max of a Hive partition column when the scan covers a single file
    # (a lake's first step). Statistics propagation is the optimizer that trips it; with it
    # off the answers are right and the benchmark queries stay well under a second.
    con.execute("SET disabled_optimizers = 'statistics_propagation'")
    try:
        if lake.location.is_s3:
            _attach_s3(con, lake.location)
        manifests = lake.run_manifests()  # skips (and names) whatever under runs/ is not a readable run
        committed = [c for c in lake.committed_files(manifests) if c.table in TABLES]
        good, skipped = _checked(lake, committed, hashed)
        files: dict[str, list[str]] = defaultdict(list)
        for artefact in good:
            files[artefact.table].append(lake.data_uri(artefact.run_id, artefact.step, artefact.table))
        for table in TABLES:
            _create_view(con, table, files[table])
        _create_runs_view(con, list(manifests.values()))
        create_registry_views(con, lake.location)  # models, model_decisions (docs/registry.md)
        _register_health_functions(con)
        if lake.location.is_s3:
            con.execute("SET allowed_paths = ?", [[uri for table in TABLES for uri in files[table]]])
        else:
            con.execute("SET allowed_directories = ?", [[lake.location.uri.rstrip("/") + "/"]])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con, skipped


def _checked(lake: Lake, committed: list[Committed], hashed: Collection[str]) -> tuple[list[Committed], list[Skipped]]:
    good, skipped = checked_artefacts(lake, committed, hashed)
    # CREATE VIEW reads the first file of a table to bind its columns, whatever the query
    # names: that one file is hashed too, so a damaged one cannot break a view nobody reads.
    for table in (t for t in TABLES if t not in hashed):
        while (first := next((a for a in good if a.table == table), None)) is not None:
            _, bad = checked_artefacts(lake, [first], {table})
            if not bad:
                break
            good.remove(first)
            skipped += bad
    return good, skipped


def tables_named(sql: str) -> set[str]:
    """The lake tables a query can read: those it names as a word (over-approximated, which
    only costs hashing). ``query_table('...')`` can build a name from pieces: all of them."""
    words = {w.lower() for w in _WORD.findall(sql)}
    return set(TABLES) if "query_table" in words else {t for t in TABLES if t in words}


def _create_view(con: duckdb.DuckDBPyConnection, table: str, files: list[str]) -> None:
    schema = TABLES[table].schema
    if not files:  # an empty view with the right columns, so queries still bind
        empty = schema.insert(1, pa.field("step", pa.int64())).empty_table()
        con.from_arrow(empty).create_view(table)
        return
    rest = ", ".join(f'"{n}"' for n in schema.names if n != "run_id")
    # union_by_name makes DuckDB open every file's footer at bind time (0.5 s on a 1M-sample
    # lake); only a table past v1 can have artefacts of differing schemas that need it.
    union = "true" if TABLES[table].version > 1 else "false"
    con.execute(
        f'CREATE VIEW "{table}" AS SELECT run_id, step, {rest} FROM read_parquet({_sql_list(files)}, '
        f"hive_partitioning = true, hive_types = {{'step': BIGINT}}, union_by_name = {union})"
    )


def _create_runs_view(con: duckdb.DuckDBPyConnection, manifests: list[RunManifest]) -> None:
    runs = pa.table({
        "run_id": pa.array([m.run_id for m in manifests], pa.string()),
        "config_hash": pa.array([m.config_hash for m in manifests], pa.string()),
        "code_version": pa.array([m.code_version for m in manifests], pa.string()),
        "created_at": pa.array([m.created_at for m in manifests], pa.string()),
        # JSON text: json_extract_string(environment, '$.threads.torch') reads one value
        "environment": pa.array([None if m.environment is None else json.dumps(m.environment, sort_keys=True)
                                 for m in manifests], pa.string()),
    })
    con.from_arrow(runs).create_view("runs")


def _register_health_functions(con: duckdb.DuckDBPyConnection) -> None:
    """oreal_core/verify/signatures.py's per-response functions as SQL scalars (NULL in, NULL out): one
    definition for the metric and for the query that lists the samples behind it. DuckDB
    wants exactly one Python parameter per SQL argument, hence the lambdas over the
    functions' defaults (the same defaults the metrics use)."""
    con.create_function("oreal_distinct_boxed", signatures.distinct_boxed, [VARCHAR], INTEGER, side_effects=False)
    con.create_function("oreal_boxed_without_work", lambda response: signatures.boxed_without_work(response),
                        [VARCHAR], BOOLEAN, side_effects=False)
    con.create_function("oreal_repeated_ngram_ratio", lambda tokens: signatures.repeated_ngram_ratio(tokens),
                        [duckdb.list_type(INTEGER)], DOUBLE, side_effects=False)


def _sql_list(items: list[str]) -> str:
    """A SQL list literal; paths come from our own layout, quotes are escaped anyway."""
    return "[" + ", ".join("'" + item.replace("'", "''") + "'" for item in items) + "]"


def httpfs_extension_path() -> str:
    import duckdb_extension_httpfs

    pattern = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions",
                           f"v{duckdb.__version__}", "httpfs.duckdb_extension")
    found = glob.glob(pattern) or glob.glob(pattern.replace(f"v{duckdb.__version__}", "*"))
    if not found:
        raise StorageUnavailable(f"the duckdb-extension-httpfs wheel has no extension for duckdb "
                                 f"{duckdb.__version__}; install duckdb-extension-httpfs=={duckdb.__version__}")
    return found[0]


def _attach_s3(con: duckdb.DuckDBPyConnection, location: StoreLocation) -> None:
    endpoint = location.s3
    con.execute(f"LOAD '{httpfs_extension_path()}'")
    options = [f"REGION '{endpoint.region}'"]
    if endpoint.host:
        options += [f"ENDPOINT '{endpoint.host}'", "URL_STYLE 'path'",
                    f"USE_SSL {'true' if endpoint.scheme == 'https' else 'false'}"]
    creds = endpoint.credentials
    if creds is not None:
        options += [f"KEY_ID '{_quote(creds.access_key)}'", f"SECRET '{_quote(creds.secret_key)}'"]
        if creds.session_token:
            options.append(f"SESSION_TOKEN '{_quote(creds.session_token)}'")
    bucket = location.root.split("/", 1)[0]
    try:
        con.execute(f"CREATE TEMPORARY SECRET lake (TYPE s3, SCOPE 's3://{bucket}', {', '.join(options)})")
    except duckdb.Error as exc:
        raise StorageUnavailable(redact(f"DuckDB could not configure S3 access: {exc}", location.secrets())) from None


def _quote(value: str) -> str:
    return value.replace("'", "''")
