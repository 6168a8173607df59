"""The registry as two DuckDB views on every lake connection (store/views.py):

- ``model_decisions``: the log, one row per committed decision (decisions.SCHEMA);
- ``models``: the current state, one row per model (the fold over the log, fold.py).

Both are built in memory from the decision files, which are few and small (one row each).
A decision file that does not match its manifest, or a corrupt manifest, is skipped with a
warning naming it, as the other views skip a bad artefact, and the fold replays the rest
leniently (a decision that no longer applies without the skipped one is skipped too, with a
warning): the views answer, and the warning says what they exclude.
"""

from __future__ import annotations

import dataclasses
import logging

import duckdb
import pyarrow as pa

from oreal_core.registry.decisions import EVALS_TYPE, PROVENANCE_COLUMNS, to_table
from oreal_core.registry.fold import LineageState, fold
from oreal_core.registry.log import DecisionLog
from oreal_core.store.filesystems import StoreLocation

log = logging.getLogger(__name__)

REGISTRY_VIEWS = ("models", "model_decisions")


def create_registry_views(con: duckdb.DuckDBPyConnection, location: StoreLocation) -> None:
    decisions_log = DecisionLog(location)
    decisions, states = [], []
    for lineage in decisions_log.lineages():
        readable, unreadable = decisions_log.read(lineage)
        for bad in unreadable:
            log.warning("%s; the model_decisions and models views skip it, so results exclude it", bad.problem)
        decisions += readable
        states.append(fold(lineage, readable, strict=False))
    con.from_arrow(to_table(decisions)).create_view("model_decisions")
    con.from_arrow(models_table(states)).create_view("models")


def models_table(states: list[LineageState]) -> pa.Table:
    models = [m for state in states for m in state.models]
    columns: dict[str, pa.Array] = {
        "model_id": pa.array([m.model_id for m in models], pa.string()),
        "lineage": pa.array([m.lineage for m in models], pa.string()),
        "status": pa.array([m.status for m in models], pa.string()),
    }
    for name in PROVENANCE_COLUMNS:
        columns[name] = pa.array([getattr(m.provenance, name) for m in models],
                                 pa.int64() if name == "step" else pa.string())
    columns["evals"] = pa.array([[dataclasses.asdict(e) for e in m.evals] for m in models], EVALS_TYPE)
    for name in ("created_at", "updated_at", "reason"):
        columns[name] = pa.array([getattr(m, name) for m in models], pa.string())
    columns["decision_seq"] = pa.array([m.decision_seq for m in models], pa.int64())
    return pa.table(columns)
