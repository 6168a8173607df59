"""Rollout stage throughput vs the raw engine, same model, prompts and K, in one run.

Ours: ``oreal_core.rollout`` (VLLMEngine.generate: prompt checks, per-prompt seeded
requests, log-probs, conversion to Sample records with decoded text). Raw: ``vllm.LLM.generate``
on the same token prompts with one ``SamplingParams(n=K, logprobs=0)`` and vLLM's own
detokenisation, results discarded. Rounds alternate ours/raw after a warm-up of each, so
machine load hits both alike; the LAST line is the DESIGN.md §8 JSON. benchmarks/smollm2.py
runs the same comparison on a real model (``compare_with_raw``).

    .venv/bin/python benchmarks/rollout.py [--policy DIR] [--prompts 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def main() -> None:
    args = _parse()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from oreal_core.config import load_config
    from oreal_core.models.tiny import build_tiny_policy, load_tokenizer
    from oreal_core.rollout import SamplingSpec, open_engine

    cfg = load_config(args.config)
    policy = Path(args.policy) if args.policy else build_tiny_policy(Path(tempfile.mkdtemp()) / "tiny", seed=0)
    prompts = synthetic_prompts(cfg, load_tokenizer(policy), args.prompts)
    spec = SamplingSpec.from_rollout(cfg.rollout)
    started = time.perf_counter()
    with open_engine(policy, cfg) as engine:
        init_s = time.perf_counter() - started
        rows, _ = compare_with_raw(engine, prompts, spec, args.rounds)
    print(json.dumps(report(rows, f"{args.prompts} prompts x K={spec.n}", init_s)
                     | {"prompts": args.prompts, "k": spec.n, "rounds": args.rounds}))


def synthetic_prompts(cfg, tokenizer, count: int) -> list:
    """``count`` chat prompts of the config's synthetic task (its train split, a fixed seed)."""
    from oreal_core.data.prompts import problem_prompt
    from oreal_core.data.synthetic import generate
    from oreal_core.data.tasks import synthetic_spec

    problems = generate(synthetic_spec(cfg.data.synthetic), "train", count, seed=123)
    return [problem_prompt(p, tokenizer, cfg.data.system_prompt) for p in problems]


def compare_with_raw(engine, prompts: Sequence, spec, rounds: int) -> tuple[list[tuple[int, str, int, float]], list]:
    """``rounds`` alternating timed calls of ours and the bare ``llm.generate`` after one
    warm-up of each (the first log-prob request of an engine is slow). Returns the rows
    (round, "ours"|"raw", response tokens, seconds) and every Sample ours drew (timed rounds)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    raw_requests = [TokensPrompt(prompt_token_ids=engine.tokenizer.encode(p.text, add_special_tokens=False))
                    for p in prompts]
    raw_params = SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k or -1,
                                max_tokens=spec.max_new_tokens, stop_token_ids=[engine.stop_token_id],
                                logprobs=0, seed=spec.seed)
    drawn = []

    def ours() -> tuple[int, float]:
        start = time.perf_counter()
        result = engine.generate(prompts, spec)
        drawn.append(result.samples)
        return result.num_response_tokens, time.perf_counter() - start

    def raw() -> tuple[int, float]:
        start = time.perf_counter()
        outputs = engine.llm.generate(raw_requests, raw_params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return sum(len(c.token_ids) for out in outputs for c in out.outputs), elapsed

    ours(), raw()
    drawn.clear()
    rows = []
    for round_no in range(rounds):
        for name, run in (("ours", ours), ("raw", raw)) if round_no % 2 == 0 else (("raw", raw), ("ours", ours)):
            tokens, seconds = run()
            rows.append((round_no, name, tokens, seconds))
    return rows, [s for samples in drawn for s in samples]


def report(rows: list[tuple[int, str, int, float]], what: str, init_s: float) -> dict:
    """Print the per-round table and the totals; returns the figures of the JSON line."""
    def rate(name: str) -> float:
        return sum(t for _, n, t, _ in rows if n == name) / sum(s for _, n, _, s in rows if n == name)

    print(f"\nrollout benchmark: {what}, {len(rows) // 2} rounds, engine init {init_s:.1f} s, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'round':>5} {'who':>5} {'tokens':>8} {'seconds':>8} {'tok/s':>9}")
    for round_no, name, tokens, seconds in rows:
        print(f"{round_no:>5} {name:>5} {tokens:>8} {seconds:>8.3f} {tokens / seconds:>9.1f}")
    ours, raw = rate("ours"), rate("raw")
    per_round = [o / r for o, r in zip(*([t / s for _, n, t, s in rows if n == who] for who in ("ours", "raw")),
                                       strict=True)]
    print(f"ours {ours:.1f} tok/s, raw {raw:.1f} tok/s, ratio {ours / raw:.3f} "
          f"(per-round median {statistics.median(per_round):.3f}; target >= 0.95)")
    return {"rollout_tok_s": round(ours, 1), "raw_tok_s": round(raw, 1), "ratio": round(ours / raw, 3),
            "engine_init_s": round(init_s, 1)}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny-cpu")
    parser.add_argument("--policy", default=None, help="policy dir (default: a freshly built random tiny policy)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    main()
