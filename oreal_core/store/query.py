"""``oreal query "SQL"``: read-only DuckDB over the lake, rendered as a table, CSV or JSON.

Two guards make it read-only. First, the statement is parsed by DuckDB itself and must be
a single SELECT-type statement spelled SELECT, WITH, DESCRIBE, SHOW, PIVOT, UNPIVOT (or
DuckDB's FROM-first / SUMMARIZE forms of SELECT); COPY, CREATE, ATTACH, SET, INSTALL,
PRAGMA ... are refused before anything runs. Second, the connection it runs on can read
only the lake and cannot change its configuration (views.connect). An s3:// URL written in
the query is normalised first and refused by name when it lies outside the lake.

A query that runs longer than ``store.query_timeout_s`` is interrupted (DuckDB has no
statement timeout of its own). The files of the tables a query names are checked against
their manifests' sha256 first; one that fails is skipped with a warning (views.connect).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
from decimal import Decimal
from typing import Literal

import duckdb

from oreal_core.config import OrealConfig, StoreConfig
from oreal_core.store.errors import QueryFailed, QueryRefused, QueryTimeout
from oreal_core.store.filesystems import StoreLocation, outside_lake, redact
from oreal_core.store.lake import Lake
from oreal_core.store.views import VIEWS, connect, tables_named

Format = Literal["table", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "csv", "json")
_ALLOWED_FIRST_WORDS = {"select", "with", "describe", "show", "from", "summarize", "pivot", "unpivot", "("}
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)+", re.S)
_S3_URL = re.compile(r"s3://[^\s'\"`,;)\]]*", re.I)


def check_read_only(sql: str) -> str:
    """Return the single statement in ``sql`` if it is read-only; raise QueryRefused if not."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"could not parse the query: {exc}") from None
    # A PIVOT without an IN list parses into CREATE TYPE ... AS ENUM statements of its own
    # (no query text; they collect the pivot's column names) followed by the SELECT.
    written = [s for s in statements if s.query or s.type != duckdb.StatementType.CREATE]
    if len(written) != 1 or written[0] is not statements[-1]:
        raise QueryRefused(f"expected exactly one statement, got {len(written)}")
    body = _LEADING_NOISE.sub("", sql.strip())
    first = body[:1] if body.startswith("(") else body.split(None, 1)[0].lower() if body else ""
    if statements[-1].type != duckdb.StatementType.SELECT or first not in _ALLOWED_FIRST_WORDS:
        raise QueryRefused(f"only read-only SELECT / WITH / DESCRIBE / SHOW / PIVOT queries are allowed, "
                           f"got a {statements[-1].type.name} statement starting with {first.upper()!r}")
    return sql


def check_inside_lake(sql: str, location: StoreLocation) -> None:
    """Refuse, by name, an s3:// URL in the query that normalises to a key outside the lake.

    This gives the clear message; the guarantee is the connection's own allow-list (views.connect),
    which also holds for URLs the query builds from pieces."""
    if not location.is_s3:  # DuckDB resolves '..' in local paths before its allowed_directories check
        return
    for url in _S3_URL.findall(sql):
        outside = outside_lake(location, url)
        if outside is not None:
            raise QueryRefused(f"{url} reads {outside}, outside the lake {location.uri}; "
                               f"queries read only the lake (views: {', '.join(VIEWS)})")


def run_query(cfg: OrealConfig | StoreConfig, sql: str, fmt: Format = "table") -> str:
    """Run one read-only query over the lake's views and render the result as text.

    Views: samples, verdicts, scored, metrics, eval (all runs and steps) and runs.
    """
    if fmt not in FORMATS:
        raise QueryRefused(f"format {fmt!r}: must be one of {list(FORMATS)}")
    check_read_only(sql)
    store = cfg.store if isinstance(cfg, OrealConfig) else cfg
    lake = Lake.open(store)
    check_inside_lake(sql, lake.location)
    con = connect(lake, tables_named(sql))  # hash only what the query can read: a 1M-sample lake's samples are 0.4 GB
    timer = threading.Timer(store.query_timeout_s, con.interrupt)  # what a statement timeout would do
    timer.start()
    try:
        relation = con.sql(sql)
        if fmt == "table":
            return str(relation)
        result = relation.to_arrow_table()
    except duckdb.InterruptException:
        raise QueryTimeout(f"query stopped after {store.query_timeout_s:g} s (store.query_timeout_s); raise "
                           "the limit with --set store.query_timeout_s=SECONDS or narrow the query") from None
    except duckdb.Error as exc:
        message = redact(str(exc), lake.location.secrets())
        raise QueryFailed(f"{message}\n(views: {', '.join(VIEWS)}; see docs/lake.md)") from None
    finally:
        timer.cancel()
        timer.join()  # a firing timer must not call interrupt() on a closed connection
        con.close()
    rows = result.to_pylist()
    return _as_json(rows) if fmt == "json" else _as_csv(result.column_names, rows)


def _as_json(rows: list[dict]) -> str:
    return json.dumps([{k: _finite(v) for k, v in row.items()} for row in rows], default=str, ensure_ascii=False)


def _as_csv(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:  # lists and structs as JSON text: a CSV cell holds one value
        writer.writerow([json.dumps(_finite(v), default=str) if isinstance(v, list | dict) else _finite(v)
                         for v in row.values()])
    return out.getvalue()


def _finite(value):
    """JSON-ready scalars: NaN/inf become null (JSON cannot spell them), and DuckDB's
    HUGEINT/DECIMAL results (e.g. sum of a BIGINT) become plain numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
