"""Every `oreal query "..."` of docs/registry.md runs, on a lake with a registry and on one without."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from oreal_core.config import StoreConfig
from oreal_core.registry import Registry
from oreal_core.registry.evals import eval_results
from oreal_core.store import EvalRecord, Lake
from oreal_core.store.query import run_query
from tests.registry.conftest import provenance

DOC = Path(__file__).resolve().parents[2] / "docs" / "registry.md"
QUERIES = re.findall(r'oreal query "([^"]+)"', DOC.read_text())


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> StoreConfig:
    cfg = StoreConfig(uri=str(tmp_path_factory.mktemp("registry-docs") / "lake"))
    lake = Lake.open(cfg)
    lake.open_run("RUN", "cfg")
    ckpt = "runs/checkpoints/RUN/step=000089"
    lake.write("RUN", 89, "eval", [EvalRecord(ckpt, "synthetic", f"q{i}", 0, "x", 3, "stop",
                                              "correct" if i % 2 else "incorrect", str(i), 1.0) for i in range(4)])
    registry = Registry.open(cfg)
    registry.register("tiny", provenance("/m/sft"))
    registry.register("tiny", provenance(ckpt, run_id="RUN", step=89), eval_results(lake, "RUN", 89, ckpt))
    registry.promote("tiny-v1", "the SFT policy")
    registry.promote("tiny-v2", "gate")
    return cfg


def test_the_docs_have_query_examples():
    assert len(QUERIES) >= 4


@pytest.mark.parametrize("sql", QUERIES)
def test_documented_query_runs(populated, tmp_path, sql):
    rows = json.loads(run_query(populated, sql, "json"))
    assert rows, sql
    assert json.loads(run_query(StoreConfig(uri=str(tmp_path / "empty")), sql, "json")) == []


def test_the_eval_pointer_leads_to_the_records(populated):
    rows = json.loads(run_query(populated, QUERIES[-1], "json"))
    assert [(r["problem_id"], r["outcome"]) for r in rows] == [("q0", "incorrect"), ("q1", "correct"),
                                                               ("q2", "incorrect"), ("q3", "correct")]
