"""``oreal query "SQL"``: read-only DuckDB over the lake, rendered as a table, CSV or JSON.

Two guards make it read-only. First, the statement is parsed by DuckDB itself and must be
a single SELECT-type statement spelled SELECT, WITH, DESCRIBE, SHOW (or DuckDB's
FROM-first / SUMMARIZE forms of SELECT); COPY, CREATE, ATTACH, SET, INSTALL, PRAGMA ...
are refused before anything runs. Second, the connection it runs on can read only the
lake root and cannot change its configuration (views.connect).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from decimal import Decimal
from typing import Literal

import duckdb

from oreal_core.config import OrealConfig, StoreConfig
from oreal_core.store.errors import QueryFailed, QueryRefused
from oreal_core.store.filesystems import redact
from oreal_core.store.lake import Lake
from oreal_core.store.views import VIEWS, connect

Format = Literal["table", "csv", "json"]
FORMATS: tuple[str, ...] = ("table", "csv", "json")
_ALLOWED_FIRST_WORDS = {"select", "with", "describe", "show", "from", "summarize", "("}
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)+", re.S)


def check_read_only(sql: str) -> str:
    """Return the single statement in ``sql`` if it is read-only; raise QueryRefused if not."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one statement, got {len(statements)}")
    body = _LEADING_NOISE.sub("", sql.strip())
    first = body[:1] if body.startswith("(") else body.split(None, 1)[0].lower() if body else ""
    if statements[0].type != duckdb.StatementType.SELECT or first not in _ALLOWED_FIRST_WORDS:
        raise QueryRefused(f"only read-only SELECT / WITH / DESCRIBE / SHOW queries are allowed, "
                           f"got a {statements[0].type.name} statement starting with {first.upper()!r}")
    return sql


def run_query(cfg: OrealConfig | StoreConfig, sql: str, fmt: Format = "table") -> str:
    """Run one read-only query over the lake's views and render the result as text.

    Views: samples, verdicts, scored, metrics, eval (all runs and steps) and runs.
    """
    if fmt not in FORMATS:
        raise QueryRefused(f"format {fmt!r}: must be one of {list(FORMATS)}")
    check_read_only(sql)
    lake = Lake.open(cfg.store if isinstance(cfg, OrealConfig) else cfg)
    con = connect(lake)
    try:
        relation = con.sql(sql)
        if fmt == "table":
            return str(relation)
        result = relation.to_arrow_table()
    except duckdb.Error as exc:
        message = redact(str(exc), lake.location.secrets())
        raise QueryFailed(f"{message}\n(views: {', '.join(VIEWS)}; see docs/lake.md)") from None
    finally:
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
