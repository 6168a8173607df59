"""Does OREAL make SmolLM2-135M-Instruct better? A learning run on this CPU, measured (issue 27).

Each row is a run of ``configs/smollm2-cpu.yaml`` through the Prefect flow (``flows.train``),
from the imported SmolLM2, for ``--steps`` iterations, evaluated greedy before the first
step and after the last on the same ``--problems`` held-out problems of the config's task
(the synthetic generator's held-out split: the same distribution as the training prompts,
disjoint from them by construction):

| row | what differs from the config |
|---|---|
| config | nothing: the rule verdict alone, no token RM (as the config says) |
| judge | ``verifier.judge.enabled=true``: SmolLM2 as its own judge, served by `oreal serve-judge` for the run, asked for every finished sample with its reply held to "A" or "B" |
| token_rm | ``token_rm.enabled=true actor.freeze_steps=1``: full OREAL (the token RM warms up for one step) |

A row with the judge evaluates with it too (the run's verifier): its pass@1 is the judge's,
so the row's start and final policies are evaluated again by ``oreal eval`` with the rule
verdict alone, the one every row is compared by (``rule_*`` figures).

Per row: start and end pass@1 with percentile-bootstrap 95 % intervals, the paired
difference (end - start per problem, bootstrap over problems) with its interval, seconds per
step (median) and per stage. Greedy decoding and the per-problem records make the two
evaluations comparable problem by problem: the paired interval is much narrower than the
difference of two independent ones.

    .venv/bin/python benchmarks/smollm2_learn.py [--steps 30] [--problems 500] [--rows config,judge,token_rm]

Engine, DeepSpeed and Prefect output go to ``<out>/learn.log``; the LAST line is one JSON
object with ``rows`` (one per run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_env import REPO

CONFIG = "smollm2-cpu"
ROWS = {
    "config": (),
    "judge": ("verifier.judge.enabled=true",),
    "token_rm": ("token_rm.enabled=true", "actor.freeze_steps=1"),
}
STAGES = ("rollout", "verify", "score", "train")


def run_row(row: str, args, out: Path) -> dict:
    """One training run with its start and end evaluation; the judge served for it if it has one."""
    from flows.train import train
    from oreal_core.config import load_config
    from oreal_core.train.checkpoint import CheckpointLayout
    from oreal_core.verify.serve import JudgeServer

    overrides = [f"model.policy={args.policy}", *ROWS[row], f"run.total_steps={args.steps}",
                 f"run.eval_every={args.steps}", f"run.checkpoint_every={args.steps}", "eval.benchmarks=[synthetic]",
                 f"eval.limit={args.problems}", f"store.uri={out}/lake", f"train.checkpoint_dir={out}/ckpt", *args.set]
    judged = load_config(CONFIG, overrides).verifier.judge.enabled
    run_id = f"smollm2-learn-{row}"
    with contextlib.ExitStack() as stack:
        if judged:
            server = stack.enter_context(JudgeServer(args.policy, max_model_len=2048, log_path=out / f"judge-{row}.log"))
            overrides.append(f"verifier.judge.hosts=[{server.host}]")
        began = time.perf_counter()
        result = train(CONFIG, overrides, run_id)
        wall_s = time.perf_counter() - began
    history = result["history"]
    per_stage = {s: round(statistics.median(m[f"time/{s}_s"] for m in history[1:] or history), 1) for s in STAGES}
    step_s = [sum(m[f"time/{s}_s"] for s in STAGES) for m in history]
    cfg = load_config(CONFIG, overrides)
    out = {"row": row, "run_id": run_id, "steps": len(history), "wall_s": round(wall_s, 1),
           "step_s_median": round(statistics.median(step_s[1:] or step_s), 1), "stage_s_median": per_stage,
           "train_accuracy": [round(m.get("accuracy", float("nan")), 3) for m in history],
           "judge": judged, **paired_gain(cfg, run_id, args.steps)}
    if judged:
        rule_run = f"{run_id}-rule"
        final = CheckpointLayout(Path(cfg.train.checkpoint_dir) / run_id).hf_dir(args.steps - 1)
        for checkpoint in (args.policy, final):
            rule_eval(overrides, checkpoint, rule_run, args.problems)
        out["rule"] = paired_gain(cfg, rule_run, args.steps)
    return out


def rule_eval(overrides: list[str], checkpoint, run_id: str, problems: int) -> None:
    """``oreal eval`` of one checkpoint on the held-out problems, graded by the rule alone."""
    from flows.cli import main as cli

    sets = [a for o in [*overrides, "verifier.judge.enabled=false"] for a in ("--set", o)]
    code = cli(["eval", "--config", CONFIG, *sets, "--checkpoint", str(checkpoint), "--bench", "synthetic",
                "--limit", str(problems), "--run-id", run_id])
    if code:
        raise SystemExit(f"oreal eval of {checkpoint} failed (exit {code}); see the log")


def paired_gain(cfg, run_id: str, steps: int) -> dict:
    """Start and end pass@1 and the paired difference, from the run's per-problem eval records."""
    from oreal_core.eval.paired import compare
    from oreal_core.store.query import run_query

    rows = json.loads(run_query(cfg, "SELECT checkpoint, problem_id, outcome FROM eval WHERE run_id = "
                                     f"'{run_id}' AND bench = 'synthetic' AND sample_idx = 0", fmt="json"))
    final_tag = f"step={steps - 1:06d}"
    start = {r["problem_id"]: float(r["outcome"] == "correct") for r in rows if final_tag not in r["checkpoint"]}
    end = {r["problem_id"]: float(r["outcome"] == "correct") for r in rows if final_tag in r["checkpoint"]}
    common = sorted(start.keys() & end.keys())
    if not common:
        raise SystemExit(f"run {run_id}: no problem was evaluated both at the start and after step {steps - 1}")
    paired = compare({p: start[p] for p in common}, {p: end[p] for p in common})

    def figures(interval) -> dict:
        return {"value": round(interval.value, 4), "low": round(interval.low, 4), "high": round(interval.high, 4)}

    return {"problems": paired.problems, "start_pass1": figures(paired.a_pass1),
            "end_pass1": figures(paired.b_pass1), "paired_gain": figures(paired.gain),
            "flips": {"gained": paired.gained, "lost": paired.lost}, "mcnemar_p": paired.mcnemar_p}


def print_table(results: list[dict], args) -> None:
    print(f"\nSmolLM2-135M-Instruct, {args.steps} steps, greedy pass@1 on {args.problems} held-out problems "
          "(95 % bootstrap intervals; gain = paired end - start)")
    print(f"{'row':<12}{'start':>22}{'end':>22}{'paired gain':>26}{'gained/lost':>13}{'s/step':>8}  stage medians s")
    for r in results:
        s, e, g = r["start_pass1"], r["end_pass1"], r["paired_gain"]
        stages = " ".join(f"{k} {v}" for k, v in r["stage_s_median"].items())
        print(f"{r['row']:<12}{s['value']:>8.3f} [{s['low']:.3f}, {s['high']:.3f}]{e['value']:>8.3f} "
              f"[{e['low']:.3f}, {e['high']:.3f}]{g['value']:>+10.3f} [{g['low']:+.3f}, {g['high']:+.3f}]"
              f"{r['flips']['gained']:>7}/{r['flips']['lost']:<5}{r['step_s_median']:>8}  {stages}")
        if "rule" in r:
            s, e, g = r["rule"]["start_pass1"], r["rule"]["end_pass1"], r["rule"]["paired_gain"]
            print(f"{'  (rule)':<12}{s['value']:>8.3f} [{s['low']:.3f}, {s['high']:.3f}]{e['value']:>8.3f} "
                  f"[{e['low']:.3f}, {e['high']:.3f}]{g['value']:>+10.3f} [{g['low']:+.3f}, {g['high']:+.3f}]")


def main() -> None:
    args = _parse()
    from flows.console import output_to

    out = Path(args.out or tempfile.mkdtemp(prefix="smollm2-learn-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"SmolLM2 learning study: rows {','.join(args.rows)}, {args.steps} steps; output in {out}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    began, results = time.perf_counter(), []
    for row in args.rows:
        with output_to(out / "learn.log"):
            results.append(run_row(row, args, out))
        r = results[-1]
        print(f"{row}: pass@1 {r['start_pass1']['value']:.3f} -> {r['end_pass1']['value']:.3f}, paired gain "
              f"{r['paired_gain']['value']:+.3f} [{r['paired_gain']['low']:+.3f}, {r['paired_gain']['high']:+.3f}], "
              f"{r['wall_s']:.0f} s", flush=True)
    print_table(results, args)
    print(json.dumps({"rows": results, "steps": args.steps, "problems": args.problems,
                      "wall_s": round(time.perf_counter() - began, 1), "load_avg_end": round(os.getloadavg()[0], 2)}))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--problems", type=int, default=500, help="held-out problems evaluated (greedy)")
    parser.add_argument("--rows", type=lambda s: s.split(","), default=list(ROWS))
    parser.add_argument("--policy", default=str(REPO / "runs/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides for every row")
    args = parser.parse_args()
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"--rows: unknown {sorted(unknown)}; known: {', '.join(ROWS)}")
    return args


if __name__ == "__main__":
    main()
