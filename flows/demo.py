"""`make demo`: the whole product on a CPU in minutes.

Builds (or reuses) the SFT-warmed tiny policy, runs OREAL iterations as Prefect flow runs
(HF-engine rollouts of the tiny model, rule verifier, DeepSpeed on CPU, a local Parquet lake), evaluates
held-out pass@1 (greedy) before and after, writes the report with plots and a
machine-readable summary.json, and says where to look next.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from flows.train import new_run_id, train
from oreal_core.config import load_config
from oreal_core.store import Lake
from oreal_core.store.report import write_report

DEMO_CONFIG = "demo-cpu"  # tiny-cpu without the token RM: see the config's header for why

QUERIES = (
    "SELECT step, avg(correct::INT) AS accuracy, count(*) AS samples FROM verdicts GROUP BY step ORDER BY step",
    "SELECT step, avg(num_tokens) AS mean_len, avg((finish_reason = 'length')::INT) AS truncated "
    "FROM samples GROUP BY step ORDER BY step",
    "SELECT step, name, value FROM metrics WHERE name IN ('loss', 'kl', 'rm_accuracy') ORDER BY name, step",
)


def run_demo(config: str = DEMO_CONFIG, overrides: tuple[str, ...] = (), run_id: str | None = None) -> dict:
    """Train, evaluate and report; returns the summary (``tell`` prints it)."""
    start = time.perf_counter()
    cfg = load_config(config, overrides)
    if not cfg.run.eval_every:
        raise ValueError("run.eval_every=0: the demo measures held-out pass@1 before and after; set it > 0")
    result = train(config, list(overrides), run_id or new_run_id("demo"))
    run_id, bench = result["run_id"], cfg.eval.benchmarks[0]
    evals = result["evals"]
    first, last = evals[min(evals)], evals[max(evals)]
    report_dir = Path(write_report(cfg, run_id))
    summary = {
        "run_id": run_id,
        "bench": bench,
        "eval_problems": int(first[f"eval/{bench}/problems"]),
        "start_pass1": first[f"eval/{bench}/pass1"],
        "end_pass1": last[f"eval/{bench}/pass1"],
        "end_pass1_interval": [last[f"eval/{bench}/pass1_low"], last[f"eval/{bench}/pass1_high"]],
        "pass1_by_policy_version": {v: e[f"eval/{bench}/pass1"] for v, e in sorted(evals.items())},
        "best_checkpoint": result["best_checkpoint"],
        "steps": cfg.run.total_steps,
        "wall_s": round(time.perf_counter() - start, 1),
        "stage_s": _stage_seconds(result["history"]),
        "eval_s": round(sum(e["time/eval_s"] for e in evals.values()), 2),
        "lake": result["lake"],
        "report": str(report_dir),
        # what the result depends on besides config and code (docs/reproducibility.md)
        "environment": Lake.open(cfg.store).run(run_id).environment,
    }
    summary["gain_points"] = round(100 * (summary["end_pass1"] - summary["start_pass1"]), 1)
    # Everything that is neither a stage nor an evaluation: the SFT warm-up when not cached,
    # engine and trainer start-up, Prefect's flow and task runs, the report.
    busy = sum(summary["stage_s"].values()) + summary["eval_s"]
    summary["overhead_s"] = round(summary["wall_s"] - busy, 1)
    summary["overhead_share"] = round(summary["overhead_s"] / summary["wall_s"], 3)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _stage_seconds(history: list[dict[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for metrics in history:
        for key, value in metrics.items():
            if key.startswith("time/"):
                totals[key.removeprefix("time/").removesuffix("_s")] += value
    return {k: round(v, 2) for k, v in totals.items()}


def tell(s: dict, log_path: Path | None = None) -> None:
    print(f"\nOREAL demo, run {s['run_id']}: held-out {s['bench']} pass@1 (greedy, {s['eval_problems']} problems) "
          f"{100 * s['start_pass1']:.1f}% -> {100 * s['end_pass1']:.1f}% ({s['gain_points']:+.1f} points) "
          f"in {s['wall_s']:.0f} s")
    print(f"stage seconds: {s['stage_s']}, evaluation {s['eval_s']:.0f} s, "
          f"other (SFT unless cached, start-up, Prefect, report) {s['overhead_s']:.0f} s ({100 * s['overhead_share']:.0f} %)")
    env = s["environment"]
    print(f"start policy {env['start_policy']['hash'][:19]}, seed {env['seeds']['run.seed']}, torch "
          f"{env['libraries']['torch']} on {env['threads']['torch']} thread(s), {env['hardware']['cpu']}"
          + (f", {len(env['hardware']['gpus'])} GPU(s)" if env["hardware"]["gpus"] else "")
          + " (docs/reproducibility.md)")
    print(f"lake: {s['lake']}\nreport: {s['report']} (plots, summary.md, health.md with the alarms, summary.json)"
          + (f"\nlog: {log_path} (engines, libraries, Prefect; `oreal demo -v` shows them here)" if log_path else ""))
    print("try:")
    for sql in QUERIES:
        print(f"  .venv/bin/oreal query \"{sql}\"")
    print("Prefect UI: .venv/bin/prefect server start, then open http://127.0.0.1:4200 and run with "
          "PREFECT_API_URL=http://127.0.0.1:4200/api to see every flow run, task and artifact (docs/deploy.md)")
