"""`oreal query` guards: no read outside an S3 lake's prefix, a statement time limit, and every
SQL example the docs show runs as written."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oreal_core.config import StoreConfig
from oreal_core.registry import Provenance, Registry
from oreal_core.registry.evals import eval_results
from oreal_core.store import EvalRecord, Lake, QueryRefused, query, views
from oreal_core.store.errors import QueryFailed, QueryTimeout
from oreal_core.store.query import run_query
from tests.store.conftest import BUCKET, write_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3_lake_with_a_neighbour(s3_server):
    """An S3 lake at s3://BUCKET/<id>/lake and a Parquet file beside it at <id>/other/x.parquet."""
    base = uuid.uuid4().hex
    cfg = StoreConfig(uri=f"s3://{BUCKET}/{base}/lake", endpoint_url=s3_server, max_retries=0)
    write_run(Lake.open(cfg), "r1", steps=1)
    sink = io.BytesIO()
    pq.write_table(pa.table({"secret": [42]}), sink)
    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=BUCKET, Key=f"{base}/other/x.parquet",
                                                           Body=sink.getvalue())
    return cfg, f"s3://{BUCKET}/{base}"


@pytest.mark.parametrize("path", ["lake/../other/x.parquet", "lake/runs/../../other/x.parquet",
                                  "lake/./../other/x.parquet", "lake/runs/r1/../../../other/x.parquet"])
def test_s3_key_traversal_out_of_the_lake_is_refused_by_name(s3_lake_with_a_neighbour, path):
    cfg, base = s3_lake_with_a_neighbour
    with pytest.raises(QueryRefused, match=rf"reads {base}/other/x.parquet, outside the lake {cfg.uri}"):
        run_query(cfg, f"SELECT * FROM read_parquet('{base}/{path}')")
    with pytest.raises(QueryRefused, match="outside the lake"):  # DuckDB's FROM 'file' shorthand
        run_query(cfg, f"SELECT * FROM '{base}/{path}'")


@pytest.mark.parametrize("expression", ["'{base}/lake/.' || './other/x.parquet'",
                                        "concat('{base}/lake/', '..', '/other/x.parquet')",
                                        "['{base}/lake/' || '..' || '/other/x.parquet']"])
def test_s3_paths_built_from_pieces_cannot_leave_the_lake_either(s3_lake_with_a_neighbour, expression):
    cfg, base = s3_lake_with_a_neighbour
    with pytest.raises(QueryFailed, match="Permission Error"):
        run_query(cfg, f"SELECT * FROM read_parquet({expression.format(base=base)})")


def test_s3_lake_files_stay_readable(s3_lake_with_a_neighbour):
    cfg, base = s3_lake_with_a_neighbour
    uri = Lake.open(cfg).data_uri("r1", 0, "samples")
    assert json.loads(run_query(cfg, f"SELECT count(*) AS n FROM read_parquet('{uri}')", "json")) == [{"n": 16}]
    assert json.loads(run_query(cfg, "SELECT count(*) AS n FROM samples", "json")) == [{"n": 16}]


def test_local_traversal_out_of_the_lake_is_refused(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    write_run(Lake.open(cfg), "r1", steps=1)
    pq.write_table(pa.table({"secret": [42]}), tmp_path / "x.parquet")
    for source in (f"'{tmp_path}/lake/../x.parquet'", f"'{tmp_path}/lake/.' || './x.parquet'"):
        with pytest.raises(QueryFailed, match="disabled by configuration"):
            run_query(cfg, f"SELECT * FROM read_parquet({source})")


def test_a_runaway_query_is_stopped_at_the_limit_naming_it(tmp_path, monkeypatch):
    cfg = StoreConfig(uri=str(tmp_path / "lake"), query_timeout_s=0.5)
    opened, outcome = [], []
    monkeypatch.setattr(query, "connect", lambda *a: opened.append(views.connect(*a)) or opened[-1])

    def runaway():
        try:
            run_query(cfg, "SELECT sum(hash(i)) FROM range(10000000000000) t(i)")  # hours
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=runaway, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout=30)
    if thread.is_alive():  # no limit: stop it ourselves so the failure is clean
        opened[0].interrupt()
        thread.join()
        pytest.fail("the query ran past store.query_timeout_s=0.5 s")
    assert time.monotonic() - start < 10
    assert isinstance(outcome[0], QueryTimeout), outcome
    assert re.search(r"stopped after 0.5 s \(store.query_timeout_s\).*--set store.query_timeout_s=SECONDS",
                     str(outcome[0]))
    assert json.loads(run_query(cfg, "SELECT 1 AS one", "json")) == [{"one": 1}]  # the limit leaves fast ones be


def test_the_limit_must_be_positive():
    from oreal_core.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="query_timeout_s"):
        StoreConfig(query_timeout_s=0)


# ---------------------------------------------------------------------- documented examples

def documented_queries() -> list[str]:
    """Every statement of the ```sql blocks of docs/lake.md and every `oreal query "..."` of
    README.md and docs/*.md."""
    found = []
    for block in re.findall(r"```sql\n(.*?)```", (REPO / "docs/lake.md").read_text(), re.S):
        text = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
        found += [statement.strip() for statement in text.split(";") if statement.strip()]
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        found += [q for q in re.findall(r'oreal query "([^"]+)"', doc.read_text()) if q != "SQL"]
    return found


@pytest.fixture(scope="module")
def docs_lake(tmp_path_factory) -> StoreConfig:
    """A lake shaped like the docs' examples: runs tiny-cpu-001 (4 steps, a judge), RUN and smol, with
    evals, and a registry."""
    cfg = StoreConfig(uri=str(tmp_path_factory.mktemp("docs") / "lake"))
    lake = Lake.open(cfg)
    write_run(lake, "tiny-cpu-001", steps=4, judge=True)
    write_run(lake, "RUN", steps=1)
    write_run(lake, "smol", steps=2, judge=True)  # docs/real-models.md's SmolLM2 run
    for run_id in ("tiny-cpu-001", "RUN"):
        lake.write(run_id, 2, "eval", [EvalRecord("ckpt/step=000001", "math500", f"q{i}", 0, "x", 3, "stop",
                                                  "correct" if i % 2 else "incorrect", str(i), 1.0) for i in range(4)])
    registry = Registry.open(cfg)  # docs/registry.md: lineage tiny, v2 (RUN's step 2, evaluated) the champion
    registry.register("tiny", Provenance("/models/sft"))
    registry.register("tiny", Provenance("ckpt/step=000001", run_id="RUN", step=2),
                      eval_results(lake, "RUN", 2, "ckpt/step=000001"))
    registry.promote("tiny-v1", "the SFT policy")
    evidence = {"comparisons": {"synthetic": {"gain": {"value": 0.08, "low": 0.028, "high": 0.13}, "mcnemar_p": 0.003}}}
    registry.promote("tiny-v2", "gate", by="retrain", evidence=json.dumps(evidence))  # docs/retrain.md's cycle
    return cfg


def test_the_docs_show_the_examples_this_test_runs():
    queries = documented_queries()
    assert len(queries) >= 8 and any(q.startswith("PIVOT") for q in queries)


@pytest.mark.parametrize("sql", documented_queries())
def test_every_documented_query_runs(docs_lake, sql):
    rows = json.loads(run_query(docs_lake, sql, "json"))
    assert rows, f"no rows from the documented query: {sql}"


def test_the_documented_pivot_gives_one_column_per_metric(docs_lake):
    sql = next(q for q in documented_queries() if q.startswith("PIVOT"))
    rows = json.loads(run_query(docs_lake, sql, "json"))
    assert {"step", "loss/total", "kl", "entropy"} <= set(rows[0]) and len(rows) == 4


def test_the_documented_plain_duckdb_glob_runs(docs_lake, monkeypatch):
    text = (REPO / "docs/lake.md").read_text()
    [sql] = re.findall(r"`(SELECT \* FROM read_parquet\('runs/[^`]+)`", text)
    monkeypatch.chdir(docs_lake.uri)
    assert duckdb.sql(sql).fetchall()


def test_pivot_is_one_statement_but_a_write_behind_it_is_not():
    from oreal_core.store.query import check_read_only

    check_read_only("PIVOT metrics ON name USING first(value) GROUP BY step")
    check_read_only("SELECT * FROM (PIVOT metrics ON name USING first(value) GROUP BY step)")
    for sql in ("SELECT 1; PIVOT metrics ON name USING first(value)", "CREATE TYPE t AS ENUM ('a'); SELECT 1",
                "PIVOT metrics ON name USING first(value); DROP VIEW samples"):
        with pytest.raises(QueryRefused):
            check_read_only(sql)
