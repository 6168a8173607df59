"""DuckDB views and the read-only `oreal query` function, local and over real S3."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from oreal_core.config import StoreConfig
from oreal_core.store import Lake, QueryRefused
from oreal_core.store.errors import QueryFailed
from oreal_core.store.layout import data_key
from oreal_core.store.query import check_read_only, run_query
from tests.store.conftest import BUCKET, write_run


@pytest.fixture(scope="module", params=["local", "s3"])
def filled(request, tmp_path_factory):
    """One lake per store kind for the whole module: these tests only read (or add
    uncommitted files, which are invisible by design)."""
    if request.param == "local":
        cfg = StoreConfig(uri=str(tmp_path_factory.mktemp("query") / "lake"))
    else:
        cfg = StoreConfig(uri=f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=request.getfixturevalue("s3_server"),
                          max_retries=1)
    lake = Lake.open(cfg)
    made = write_run(lake, "r1", steps=3, judge=True)
    write_run(lake, "r2", steps=1)
    return cfg, made


def test_views_span_runs_and_steps_with_step_from_the_partition(filled):
    cfg, made = filled
    out = json.loads(run_query(cfg, "SELECT run_id, step, count(*) AS n FROM samples GROUP BY ALL ORDER BY ALL", "json"))
    assert out == [{"run_id": "r1", "step": 0, "n": 16}, {"run_id": "r1", "step": 1, "n": 16},
                   {"run_id": "r1", "step": 2, "n": 16}, {"run_id": "r2", "step": 0, "n": 16}]


def test_accuracy_by_step_matches_the_records(filled):
    cfg, made = filled
    out = json.loads(run_query(cfg, "SELECT step, avg(correct::INT) AS acc FROM verdicts "
                                    "WHERE run_id = 'r1' GROUP BY step ORDER BY step", "json"))
    expected = [sum(v.correct for v in rec.verdicts) / len(rec.verdicts) for rec in made]
    assert [row["acc"] for row in out] == pytest.approx(expected)


def test_list_columns_and_joins_work(filled):
    cfg, made = filled
    sql = ("SELECT s.step, sum(len(s.token_ids)) AS tokens, sum(len(c.token_weights)) AS weighted "
           "FROM samples s JOIN scored c USING (run_id, step, prompt_id, sample_idx) "
           "WHERE run_id = 'r1' GROUP BY s.step ORDER BY s.step")
    out = json.loads(run_query(cfg, sql, "json"))
    assert [r["tokens"] for r in out] == [sum(len(s.token_ids) for s in rec.samples) for rec in made]
    assert [r["weighted"] for r in out] == [sum(len(r.token_weights) for r in rec.scored) for rec in made]


def test_csv_and_table_output(filled):
    cfg, _ = filled
    text = run_query(cfg, "SELECT prompt_id, sample_idx, token_ids FROM samples WHERE run_id='r2' ORDER BY 1, 2 LIMIT 2", "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["prompt_id", "sample_idx", "token_ids"]
    assert isinstance(json.loads(rows[1][2]), list)
    table = run_query(cfg, "SELECT name, avg(value) AS v FROM metrics GROUP BY name ORDER BY name")
    assert "entropy" in table and "loss/total" in table
    assert "config_hash" in run_query(cfg, "DESCRIBE runs")
    assert "samples" in run_query(cfg, "SHOW TABLES")


def test_uncommitted_artefacts_are_invisible_to_views(filled):
    cfg, _ = filled
    lake = Lake.open(cfg)
    lake._put(data_key("r2", 5, "samples"), b"not committed")
    out = json.loads(run_query(cfg, "SELECT count(*) AS n FROM samples WHERE run_id = 'r2'", "json"))
    assert out == [{"n": 16}]


def test_empty_tables_still_have_views(filled):
    cfg, _ = filled
    assert json.loads(run_query(cfg, "SELECT count(*) AS n FROM eval", "json")) == [{"n": 0}]
    assert "problem_id" in run_query(cfg, "DESCRIBE eval")


@pytest.mark.parametrize("sql", [
    "DROP VIEW samples", "CREATE TABLE t AS SELECT 1", "COPY samples TO 'out.csv'", "INSERT INTO t VALUES (1)",
    "ATTACH 'x.db'", "SET threads = 1", "INSTALL httpfs", "PRAGMA version", "SELECT 1; DROP VIEW samples",
    "EXPLAIN SELECT 1", "CALL pragma_version()", "",
])
def test_write_and_config_statements_are_refused(sql):
    with pytest.raises(QueryRefused):
        check_read_only(sql)


@pytest.mark.parametrize("sql", ["SELECT 1", "with a as (select 1) select * from a", "DESCRIBE samples",
                                 "SHOW TABLES", "  -- note\n SELECT 2", "FROM samples", "(SELECT 1)"])
def test_read_only_statements_pass(sql):
    assert check_read_only(sql) == sql


def test_reading_outside_the_lake_is_refused(filled, tmp_path):
    cfg, _ = filled
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(QueryFailed, match="disabled by configuration"):
        run_query(cfg, f"SELECT * FROM read_csv('{outside}')")
    with pytest.raises(QueryFailed, match="Binder Error"):
        run_query(cfg, "SELECT no_such_column FROM samples")
    with pytest.raises(QueryRefused, match="format"):
        run_query(cfg, "SELECT 1", "xml")


def test_direct_read_parquet_inside_the_lake_root(filled):
    """DuckDB read_parquet on the lake's own URIs (s3:// through the bundled httpfs)."""
    cfg, _ = filled
    lake = Lake.open(cfg)
    uri = lake.data_uri("r1", 1, "samples")
    out = json.loads(run_query(cfg, f"SELECT count(*) AS n, min(step) AS s FROM read_parquet('{uri}', hive_partitioning = true)", "json"))
    assert out == [{"n": 16, "s": 1}]
