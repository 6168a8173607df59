"""``oreal eval``: evaluate one checkpoint from the command line and print the table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from oreal_core.config import ConfigError, OrealConfig
from oreal_core.eval.problems import EvalInputError, parse_bench_list
from oreal_core.eval.runner import EvalSummary, evaluate


def run_eval_command(cfg: OrealConfig, checkpoint: str, bench: str | None = None, *, k: int | None = None,
                     limit: int | None = None, temperature: float | None = None, run_id: str | None = None,
                     step: int | None = None) -> str:
    """Evaluate ``checkpoint`` on the comma-separated ``bench`` list and render the summary.

    ``k`` draws k samples per problem and reports pass@k (needs a temperature > 0, from
    ``temperature`` or ``eval.temperature``); ``limit`` evaluates the first N problems of each
    benchmark. The records go to run ``run_id`` (default ``eval-<checkpoint name>``) at
    ``step`` (default: the step in the checkpoint's name, else 0); re-running the same
    command resumes an interrupted evaluation.
    """
    cfg = with_eval_overrides(cfg, k=k, limit=limit, temperature=temperature)
    benches = parse_bench_list(bench) if bench else cfg.eval.benchmarks
    summary = evaluate(cfg, checkpoint, run_id=run_id or default_run_id(checkpoint), benches=benches, step=step)
    return render_summary(summary)


def with_eval_overrides(cfg: OrealConfig, *, k: int | None, limit: int | None,
                        temperature: float | None) -> OrealConfig:
    changes: dict[str, object] = {}
    if k is not None:
        changes.update(samples=k, pass_k=k)
    if limit is not None:
        changes["limit"] = limit
    if temperature is not None:
        changes["temperature"] = temperature
    try:
        return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **changes))
    except ConfigError as exc:
        hint = " (pass --temperature, e.g. 0.6, or --set eval.temperature=...)" if k and k > 1 else ""
        raise EvalInputError(f"eval settings: {exc}{hint}") from None


def default_run_id(checkpoint: str | Path) -> str:
    """``eval-<parent>-<name>`` of the checkpoint, made a valid run id (``step=000040`` -> ``step-000040``)."""
    path = Path(checkpoint).resolve()
    name = "-".join(p for p in (path.parent.name, path.name) if p)
    return "eval-" + re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:100]


def render_summary(summary: EvalSummary) -> str:
    header = ("bench", "problems", "n", "pass@1 [95% CI]", "pass@k [95% CI]", "mean tokens", "truncated",
              "sampled", "problems/s")
    rows = [header]
    for b in summary.benches:
        rows.append((b.bench, str(b.problems), str(b.samples_per_problem), _interval(b.pass1),
                     f"k={b.k}: {_interval(b.pass_k)}", f"{b.mean_tokens:.1f}", f"{b.truncation_rate:.1%}",
                     str(b.sampled_problems), f"{b.problems_per_s:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"checkpoint {summary.checkpoint}  run {summary.run_id}  step {summary.step}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for b in summary.benches:
        if b.breakdown:
            groups = ", ".join(f"{g.key}={g.value}: {g.pass1:.3f} ({g.problems})" for g in b.breakdown)
            lines.append(f"{b.bench} by group: {groups}")
    lines += ["", f"per-sample records: oreal query \"SELECT * FROM eval WHERE run_id = '{summary.run_id}' "
                  f"AND step = {summary.step}\""]
    return "\n".join(lines)


def _interval(i) -> str:
    return f"{i.value:.3f} [{i.low:.3f}, {i.high:.3f}]"
