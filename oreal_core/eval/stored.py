"""The eval records of one (run, step) in the lake, committed chunk by chunk.

The lake holds one artefact per (run, step, table), and ``eval`` is partitioned by the
training step of the checkpoint. So all benchmarks (and, for released models evaluated
at step 0, all checkpoints) of one step share one ``eval`` artefact. Every
``eval.commit_every`` problems the runner appends the new rows and re-commits the whole
artefact (``Lake.write(..., overwrite=True)``), and an interrupted evaluation resumes from
the last commit without re-sampling a finished problem. ``Lake.write`` uncommits the old
artefact before committing the new one (readers never see new data under an old
manifest), so a crash inside that window (one Parquet upload and two moves) hides the
step's earlier chunks and the re-run samples them again: work repeated, never wrong rows.

Rewriting the artefact costs O(rows) per chunk; with the default of 64 problems per
commit that is negligible next to sampling even for MATH-500 x 16 long responses.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from oreal_core.store import Lake
from oreal_core.store.records import EvalRecord, eval_table

TABLE = "eval"


class StepRecords:
    """The committed eval rows of (run, step), kept in memory and re-committed on append."""

    def __init__(self, lake: Lake, run_id: str, step: int) -> None:
        self.lake, self.run_id, self.step = lake, run_id, step
        committed = lake.artefact(run_id, step, TABLE) is not None
        rows = lake.read(run_id, step, TABLE).drop_columns(["step"]).to_pylist() if committed else []
        self.records = [EvalRecord(**{k: v for k, v in row.items() if k != "run_id"}) for row in rows]

    def of(self, checkpoint: str, bench: str) -> list[EvalRecord]:
        return [r for r in self.records if r.checkpoint == checkpoint and r.bench == bench]

    def finished_problems(self, checkpoint: str, bench: str, samples: int) -> set[str]:
        """Problems with all ``samples`` samples committed (others are sampled again)."""
        seen: dict[str, set[int]] = {}
        for r in self.of(checkpoint, bench):
            seen.setdefault(r.problem_id, set()).add(r.sample_idx)
        return {pid for pid, idx in seen.items() if idx == set(range(samples))}

    def append(self, checkpoint: str, bench: str, new: Sequence[EvalRecord]) -> None:
        """Commit ``new``, replacing any earlier rows of the same problems (a half-kept problem)."""
        replaced = {r.problem_id for r in new}
        kept = [r for r in self.records
                if not (r.checkpoint == checkpoint and r.bench == bench and r.problem_id in replaced)]
        records = kept + list(new)
        table: pa.Table = eval_table(self.run_id, records)
        self.lake.write(self.run_id, self.step, TABLE, table, overwrite=True)
        self.records = records
