"""A model's evaluation results, from the lake's per-problem ``eval`` records of a run and step.

The registry stores each benchmark's pass@1 with its 95 % bootstrap interval and a pointer
to the records (run, step, checkpoint) rather than a copy: the gate and anyone auditing it
re-read the very rows the numbers came from (``SELECT * FROM eval WHERE run_id = ...``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from oreal_core.eval.estimators import mean_with_bootstrap
from oreal_core.eval.metrics import per_problem_counts
from oreal_core.registry.decisions import EvalResult
from oreal_core.registry.errors import RegistryError
from oreal_core.store import Lake
from oreal_core.store.records import EvalRecord

TABLE = "eval"


def eval_results(lake: Lake, run_id: str, step: int, checkpoint: str) -> tuple[EvalResult, ...]:
    """Per-benchmark pass@1 of ``checkpoint`` from the eval records at (run_id, step); () when that
    step has none. A step evaluated for several checkpoints must contain this one."""
    lake.run(run_id)  # RunNotFound names the lake's runs
    if lake.artefact(run_id, step, TABLE) is None:
        return ()
    rows = lake.read(run_id, step, TABLE).drop_columns(["step", "run_id"]).to_pylist()
    by_checkpoint: dict[str, list[EvalRecord]] = defaultdict(list)
    for row in rows:
        by_checkpoint[row["checkpoint"]].append(EvalRecord(**row))
    chosen = _matching(by_checkpoint, checkpoint, f"run {run_id} step {step}")
    by_bench: dict[str, list[EvalRecord]] = defaultdict(list)
    for record in by_checkpoint[chosen]:
        by_bench[record.bench].append(record)
    results = []
    for bench, records in sorted(by_bench.items()):
        counts = per_problem_counts(records)
        pass1 = mean_with_bootstrap([c / n for n, c in counts.values()])
        results.append(EvalResult(
            bench=bench, pass1=pass1.value, pass1_low=pass1.low, pass1_high=pass1.high, problems=len(counts),
            samples_per_problem=max(n for n, _ in counts.values()), eval_run_id=run_id, eval_step=step,
            eval_checkpoint=chosen))
    return tuple(results)


def _matching(by_checkpoint: dict[str, list[EvalRecord]], checkpoint: str, where: str) -> str:
    if len(by_checkpoint) == 1:  # a training run's own eval of that step: the checkpoint it saved
        return next(iter(by_checkpoint))
    wanted = _resolved(checkpoint)
    found = [name for name in by_checkpoint if name == checkpoint or _resolved(name) == wanted]
    if len(found) != 1:
        raise RegistryError(f"{where}: the eval records are of {len(by_checkpoint)} checkpoints "
                            f"({', '.join(sorted(by_checkpoint))}) and {'none' if not found else 'several'} "
                            f"of them is {checkpoint}")
    return found[0]


def _resolved(name: str) -> str:
    return name if "://" in name else Path(name).expanduser().resolve().as_posix()
