"""Evaluations across checkpoints, from the lake: accuracy per step, the best step, flips.

The SQL lives in oreal_core/store/canned.py (EVAL_ACCURACY_BY_CHECKPOINT,
EVAL_FLIPPED_PROBLEMS) so ``oreal query`` users can run exactly what these functions run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from oreal_core.config import OrealConfig, StoreConfig
from oreal_core.store import Lake, canned
from oreal_core.store.layout import check_run_id
from oreal_core.store.views import connect


@dataclass(frozen=True)
class BestCheckpoint:
    """The evaluated step with the highest pass@1 on ``bench`` (earliest on a tie)."""

    step: int
    checkpoint: str
    bench: str
    pass1: float
    problems: int


def _query(cfg: OrealConfig | StoreConfig, sql: str, params: dict[str, Any]) -> pa.Table:
    lake = Lake.open(cfg.store if isinstance(cfg, OrealConfig) else cfg)
    lake.run(check_run_id(params["run_id"]))  # RunNotFound names the known runs
    con = connect(lake)
    try:
        return con.execute(sql, params).to_arrow_table()
    finally:
        con.close()


def accuracy_by_checkpoint(cfg: OrealConfig | StoreConfig, run_id: str) -> pa.Table:
    """One row per (step, checkpoint, bench): problems, pass1, mean_tokens, truncated_frac."""
    return _query(cfg, canned.EVAL_ACCURACY_BY_CHECKPOINT, {"run_id": run_id})


def flipped_problems(cfg: OrealConfig | StoreConfig, run_id: str, step_a: int, step_b: int) -> pa.Table:
    """Problems solved at one step and not the other: bench, problem_id, flip (gained|lost), ..."""
    return _query(cfg, canned.EVAL_FLIPPED_PROBLEMS, {"run_id": run_id, "step_a": step_a, "step_b": step_b})


def best_checkpoint(cfg: OrealConfig | StoreConfig, run_id: str, bench: str) -> BestCheckpoint | None:
    """The step to keep for ``bench`` (the paper's README: often not the last); None if never evaluated."""
    rows = [r for r in accuracy_by_checkpoint(cfg, run_id).to_pylist() if r["bench"] == bench]
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["pass1"], -r["step"]))
    return BestCheckpoint(best["step"], best["checkpoint"], bench, best["pass1"], best["problems"])
