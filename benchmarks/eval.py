"""Evaluation throughput (problems/s) of the tiny policy on CPU, HF and vLLM engines.

Ours: ``oreal_core.eval.runner.evaluate`` on the synthetic held-out split, greedy pass@1:
chat-templated prompts, the run's Verifier (rule check in worker processes), per-sample
records committed to a local lake every ``eval.commit_every`` problems, bootstrap
intervals. Baseline: what the SFT stage's ``heldout_pass1`` does: one bare
``engine.generate`` over the same prompts and an exact string match of the boxed answer,
nothing recorded. Both use the same already-open engine (its start-up is reported apart,
as training reuses its engine). The LAST line is the DESIGN.md §8-style JSON.

    .venv/bin/python benchmarks/eval.py [--policy DIR] [--problems 500] [--engines hf,vllm]

Without --policy the SFT-warmed tiny policy is taken from ``sft.cache_dir`` (trained first
if it is not cached: minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    args = _parse()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from oreal_core.config import load_config
    from oreal_core.models.sft import run_sft

    overrides = [f"eval.limit={args.problems}", f"store.uri={tempfile.mkdtemp(prefix='eval-bench-')}",
                 *args.set]
    cfg = load_config(args.config, overrides)
    policy = Path(args.policy) if args.policy else Path(run_sft(cfg).policy_dir)
    results = {name: _measure(cfg, policy, name) for name in args.engines.split(",")}
    _print_table(results, args.problems)
    out = {"problems": args.problems}
    for name, r in results.items():
        out |= {f"eval_problems_per_s_{name}": round(r["ours_pps"], 2),
                f"raw_problems_per_s_{name}": round(r["raw_pps"], 2),
                f"ratio_{name}": round(r["ours_pps"] / r["raw_pps"], 3),
                f"engine_start_s_{name}": round(r["start_s"], 1),
                f"pass1_{name}": r["pass1"], f"exact_match_pass1_{name}": r["exact"]}
    print(json.dumps(out))


def _measure(cfg, policy: Path, engine_name: str) -> dict[str, float]:
    import dataclasses

    from oreal_core.data.synthetic import is_correct
    from oreal_core.data.tasks import synthetic_splits
    from oreal_core.eval.problems import load_eval_set
    from oreal_core.eval.runner import evaluate
    from oreal_core.rollout import SamplingSpec, open_engine
    from oreal_core.verify.verifier import Verifier

    cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, engine=engine_name))
    started = time.perf_counter()
    with open_engine(policy, cfg) as engine, Verifier(cfg.verifier, seed=cfg.run.seed) as verifier:
        start_s = time.perf_counter() - started
        prompts = load_eval_set("synthetic", cfg, engine.tokenizer).prompts
        spec = SamplingSpec.from_eval(cfg.eval, cfg.rollout)
        engine.generate(prompts[:16], spec)  # warm-up (vLLM graph capture, allocator)
        t0 = time.perf_counter()
        summary = evaluate(cfg, policy, run_id=f"bench-{engine_name}", benches=["synthetic"], step=0,
                           engine=engine, verifier=verifier)
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        samples = engine.generate(prompts, spec).samples
        gold = {p.problem_id: p for p in synthetic_splits(cfg.data.synthetic)[1]}
        exact = sum(is_correct(s.response, gold[s.prompt_id]) for s in samples) / len(prompts)
        raw_s = time.perf_counter() - t0
    bench = summary.bench("synthetic")
    return {"ours_pps": bench.problems / ours_s, "raw_pps": len(prompts) / raw_s, "start_s": start_s,
            "ours_s": ours_s, "raw_s": raw_s, "pass1": round(bench.pass1.value, 4), "exact": round(exact, 4),
            "ci": (round(bench.pass1.low, 3), round(bench.pass1.high, 3)), "tokens": round(bench.mean_tokens, 1),
            "truncated": round(bench.truncation_rate, 4)}


def _print_table(results: dict[str, dict], problems: int) -> None:
    print(f"\nsynthetic held-out, {problems} problems, greedy pass@1 (tiny policy, CPU)\n")
    print(f"{'engine':<7}{'ours s':>8}{'ours p/s':>10}{'raw s':>8}{'raw p/s':>10}{'ratio':>7}"
          f"{'pass@1 [95% CI]':>24}{'exact-match':>13}{'tokens':>8}{'trunc':>7}{'start s':>9}")
    for name, r in results.items():
        print(f"{name:<7}{r['ours_s']:>8.1f}{r['ours_pps']:>10.2f}{r['raw_s']:>8.1f}{r['raw_pps']:>10.2f}"
              f"{r['ours_pps'] / r['raw_pps']:>7.2f}{r['pass1']:>10.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
              f"{r['exact']:>13.3f}{r['tokens']:>8.1f}{r['truncated']:>7.3f}{r['start_s']:>9.1f}")
    print()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny-cpu")
    parser.add_argument("--policy", default=None, help="HF policy dir (default: the cached SFT tiny policy)")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    return parser.parse_args()


if __name__ == "__main__":
    main()
