"""Scored batches on disk, for the launcher: JSON (written by :func:`write_scored_batch`)
or the lake's ``scored.parquet`` (one row per sample; rows with ``kept = false`` ignored)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from oreal_core.types import ScoredBatch, ScoredSample

COLUMNS = ("prompt_id", "sample_idx", "prompt_token_ids", "token_ids", "advantage", "is_positive")


def write_scored_batch(batch: ScoredBatch, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"step": batch.step, "samples": [asdict(s) for s in batch.samples]}))
    tmp.replace(path)
    return path


def _sample(row: dict) -> ScoredSample:
    return ScoredSample(prompt_id=str(row["prompt_id"]), sample_idx=int(row["sample_idx"]),
                        prompt_token_ids=tuple(int(t) for t in row["prompt_token_ids"]),
                        token_ids=tuple(int(t) for t in row["token_ids"]),
                        advantage=float(row["advantage"]), is_positive=bool(row["is_positive"]),
                        rollout_logprobs=tuple(float(x) for x in row.get("rollout_logprobs") or ()))


def read_scored_batch(path: str | Path, step: int | None = None) -> ScoredBatch:
    """Load one step's kept samples; ``step`` is required for Parquet (it is in the path)."""
    path = Path(path)
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
        return ScoredBatch(step=int(raw["step"]), samples=tuple(_sample(r) for r in raw["samples"]))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: scored batch lacks column(s) {missing}")
        if step is None:
            raise ValueError(f"{path}: pass the step number for a Parquet scored batch")
        rows = [r for r in table.to_pylist() if r.get("kept", True)]
        return ScoredBatch(step=step, samples=tuple(_sample(r) for r in rows))
    raise ValueError(f"{path}: expected a .json or .parquet scored batch")
