"""How hard a task is for SmolLM2-135M-Instruct: the study behind configs/smollm2-cpu.yaml's task.

OREAL learns only from prompts whose K samples are neither all right nor all wrong
(0 < p < 1). On GSM8K and on the demo's 2-3-operand arithmetic SmolLM2 solves 2-8 %, so
nearly every group is all wrong (docs/real-models.md). This script samples K answers per
prompt for several settings of the synthetic generator (operand count, operand range,
operators) and of the system prompt, grades them with the rule verifier, and prints per
setting the mean pass rate and the share of prompts with 0 < p < 1 (the prompts that
teach), all on one vLLM engine with the config's rollout settings.

    .venv/bin/python benchmarks/smollm2_task.py [--prompts 32] [--k 4] [--temperature 1.0] [--settings 0,1] [--policy DIR]

The LAST line is one JSON object: ``rows``, one per setting, and ``best`` (the setting with
the most prompts in 0 < p < 1).
"""

from __future__ import annotations

import argparse
import json
import time

from bench_env import REPO

SYSTEM_BOXED = "Solve the problem step by step. Put the final answer in \\boxed{}."
# (label, min_operands, max_operands, max_value, operators, system prompt)
SETTINGS = [
    ("2 ops, 0-9, +-", 2, 2, 9, "+-", ""),
    ("2 ops, 0-9, +", 2, 2, 9, "+", ""),
    ("2 ops, 0-20, +-", 2, 2, 20, "+-", ""),
    ("2 ops, 0-50, +-", 2, 2, 50, "+-", ""),
    ("2 ops, 0-99, +", 2, 2, 99, "+", ""),
    ("2-3 ops, 0-9, +-", 2, 3, 9, "+-", ""),
    ("2-3 ops, 0-30, +- (demo task)", 2, 3, 30, "+-", ""),
    ("2 ops, 0-20, +-, boxed system prompt", 2, 2, 20, "+-", SYSTEM_BOXED),
    ("2-3 ops, 0-9, +-, boxed system prompt", 2, 3, 9, "+-", SYSTEM_BOXED),
    ("2-3 ops, 0-30, +-, boxed system prompt", 2, 3, 30, "+-", SYSTEM_BOXED),
]


def main() -> None:
    args = _parse()
    from oreal_core.config import load_config
    from oreal_core.data.prompts import problem_prompt
    from oreal_core.data.synthetic import ArithmeticSpec, generate
    from oreal_core.pipeline.prepare import estimate_pass_rates
    from oreal_core.rollout import SamplingSpec, open_engine
    from oreal_core.verify.verifier import Verifier

    cfg = load_config("smollm2-cpu", [f"model.policy={args.policy}", "verifier.judge.enabled=false",
                                      "verifier.judge_when=never", f"rollout.samples_per_prompt={args.k}",
                                      f"rollout.temperature={args.temperature}"])
    spec = SamplingSpec.from_rollout(cfg.rollout)
    verifier = Verifier(cfg.verifier, seed=0)
    rows = []
    with open_engine(cfg.model.policy, cfg) as engine:
        for label, lo, hi, max_value, ops, system in (SETTINGS[i] for i in args.settings):
            problems = generate(ArithmeticSpec(lo, hi, max_value, ops), "train", args.prompts, seed=7)
            prompts = [problem_prompt(p, engine.tokenizer, system) for p in problems]
            start = time.perf_counter()
            rates, outcomes = estimate_pass_rates(prompts, engine, verifier, spec)
            rows.append({"setting": label, "mean_pass_rate": round(sum(rates) / len(rates), 3),
                         "signal_frac": round(sum(0 < r < 1 for r in rates) / len(rates), 3),
                         "all_wrong_frac": round(sum(r == 0 for r in rates) / len(rates), 3),
                         "all_right_frac": round(sum(r == 1 for r in rates) / len(rates), 3),
                         "outcomes": dict(outcomes), "seconds": round(time.perf_counter() - start, 1)})
            print(f"{label:42s} pass {rows[-1]['mean_pass_rate']:.3f}  0<p<1 {rows[-1]['signal_frac']:.3f}  "
                  f"p=0 {rows[-1]['all_wrong_frac']:.3f}  p=1 {rows[-1]['all_right_frac']:.3f}  "
                  f"{rows[-1]['seconds']:.0f} s", flush=True)
    best = max(rows, key=lambda r: r["signal_frac"])["setting"]
    print(json.dumps({"rows": rows, "best": best, "prompts": args.prompts, "k": args.k,
                      "temperature": args.temperature}))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32, help="prompts per setting")
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout temperature")
    parser.add_argument("--settings", type=lambda s: [int(i) for i in s.split(",")],
                        default=list(range(len(SETTINGS))), help="indices into SETTINGS (default: all)")
    parser.add_argument("--policy", default=str(REPO / "runs/models/SmolLM2-135M-Instruct"))
    return parser.parse_args()


if __name__ == "__main__":
    main()
