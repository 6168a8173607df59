"""The evaluation flow: one checkpoint on math benchmarks, for the `evaluate` deployment.

Training evaluates on its own schedule (flows/train.py); this flow is for any checkpoint
on demand: a released model by path on a GPU machine, or a run's `hf/step=N` directory.
Per-sample records go to the lake's `eval` table; re-running resumes an interrupted one.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from oreal_core.config import load_config
from oreal_core.eval.command import default_run_id, render_summary, with_eval_overrides
from oreal_core.eval.runner import evaluate as evaluate_checkpoint


@flow(name="oreal-evaluate")
def evaluate(checkpoint: str, benchmarks: list[str] | None = None, config: str = "tiny-cpu",
             overrides: list[str] | None = None, run_id: str | None = None, k: int | None = None,
             limit: int | None = None) -> dict[str, float]:
    """Evaluate ``checkpoint``; returns pass@1 per benchmark."""
    cfg = with_eval_overrides(load_config(config, overrides or ()), k=k, limit=limit, temperature=None)
    summary = evaluate_checkpoint(cfg, checkpoint, run_id=run_id or default_run_id(checkpoint),
                                  benches=benchmarks or None)
    table = render_summary(summary)
    get_run_logger().info("\n%s", table)
    create_markdown_artifact(markdown=f"# Evaluation of `{checkpoint}`\n\n```\n{table}\n```\n",
                             description=f"run {summary.run_id}, step {summary.step}")
    return {b.bench: b.pass1.value for b in summary.benches}
