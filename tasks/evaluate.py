"""The evaluation task: a checkpoint on the configured benchmarks, records into the lake.

Training calls it on schedule with the run's long-lived rollout engine (already carrying
the checkpoint's weights) and verifier, so an evaluation costs sampling time only.
"""

from __future__ import annotations

import time

from prefect import task

from oreal_core.eval.runner import evaluate
from oreal_core.pipeline import position
from oreal_core.pipeline.session import RunSpec, session_for


@task(name="evaluate", task_run_name="evaluate-{label}")
def evaluate_task(spec: RunSpec, policy_version: int, label: str) -> dict[str, float]:
    """Evaluate the policy after ``policy_version`` training steps (0 = the start policy).

    Returns pass@1 per benchmark (and its 95 % interval bounds); per-sample records are in
    the lake's ``eval`` table under step ``max(policy_version - 1, 0)``.
    """
    session = session_for(spec)
    position.enter(spec.run_id, policy_version - 1 if policy_version else None, f"evaluation ({label})")
    engine = session.engine_at(policy_version)
    start = time.perf_counter()  # sampling and checking only: the engine's start-up is not the eval's
    summary = evaluate(session.cfg, session.policy_dir_for(policy_version), run_id=spec.run_id,
                       step=max(policy_version - 1, 0), engine=engine, verifier=session.verifier,
                       lake=session.lake)
    out: dict[str, float] = {"time/eval_s": time.perf_counter() - start}
    for bench in summary.benches:
        out[f"eval/{bench.bench}/pass1"] = bench.pass1.value
        out[f"eval/{bench.bench}/pass1_low"] = bench.pass1.low
        out[f"eval/{bench.bench}/pass1_high"] = bench.pass1.high
        out[f"eval/{bench.bench}/problems"] = float(bench.problems)
        out[f"eval/{bench.bench}/problems_per_s"] = bench.problems_per_s
    return out
