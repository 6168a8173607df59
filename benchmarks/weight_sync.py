"""Weights from the trainer to the rollout engine: in memory vs through an HF checkpoint.

After every training step the running vLLM engine must sample from the new actor. The
disk path (``rollout.weight_sync=disk``) writes the actor as an HF checkpoint and has the
engine re-read it; the memory path (``weight_sync=memory``, the default) hands the
trainer's tensors to the engine (``collective_rpc("reload_weights", weights_iterator=...)``).
Both sides load the same trained actor into the same engine; syncs alternate so machine
noise hits both; medians are reported. Each side's greedy output after its sync is
checked identical, so the timing compares equal work.

    .venv/bin/python benchmarks/weight_sync.py [--syncs 8]

Last line: JSON with memory_sync_s, disk_sync_s, ratio (disk / memory time), weights_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oreal_core.config import load_config  # noqa: E402
from oreal_core.data.prompts import problem_prompt  # noqa: E402
from oreal_core.data.synthetic import ArithmeticSpec, generate  # noqa: E402
from oreal_core.models.tiny import build_tiny_policy, load_tokenizer  # noqa: E402
from oreal_core.rollout import SamplingSpec, open_engine  # noqa: E402
from oreal_core.train import checkpoint  # noqa: E402
from oreal_core.train.trainer import Trainer  # noqa: E402


def weights_mb(weights: dict[str, torch.Tensor]) -> float:
    return sum(t.numel() * t.element_size() for t in weights.values()) / 2**20


def timed_memory_sync(engine, weights: dict[str, torch.Tensor], version: int) -> float:
    """Seconds of one in-memory sync: packing, the IPC hop to the EngineCore, vLLM's loader."""
    start = time.perf_counter()
    engine.load_weights(weights, policy_version=version)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--syncs", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="weight-sync-"))
    policy = build_tiny_policy(root / "policy")
    cfg = load_config("tiny-cpu", [f"model.policy={policy}"])
    trainer = Trainer(cfg, policy)
    with torch.no_grad():  # weights unlike the engine's start weights, as after a training step
        for param in trainer.actor.engine.module.parameters():
            param.add_(0.02 * torch.randn_like(param))
    engine = open_engine(policy, cfg)
    tokenizer = load_tokenizer(policy)
    prompts = [problem_prompt(p, tokenizer) for p in generate(ArithmeticSpec(), "heldout", 8, seed=0)]
    greedy = SamplingSpec.greedy(24, 256, cfg.rollout.stop_word)
    size_mb = weights_mb(trainer.actor_weights())

    def memory(version: int) -> float:
        return timed_memory_sync(engine, trainer.actor_weights(), version)

    def disk(version: int) -> float:
        start = time.perf_counter()
        hf_dir = root / "hf" / f"step={version:06d}"
        checkpoint.save_hf_actor(trainer.actor.engine, cfg.train.zero_stage, policy, hf_dir)
        engine.reload_weights(hf_dir, policy_version=version)
        return time.perf_counter() - start

    start_output = [s.token_ids for s in engine.generate(prompts, greedy).samples]
    times: dict[str, list[float]] = {"memory": [], "disk": []}
    outputs: dict[str, list] = {}
    for i in range(args.syncs):
        for name, sync in (("memory", memory), ("disk", disk)) if i % 2 == 0 else (("disk", disk), ("memory", memory)):
            times[name].append(sync(2 * i + (name == "disk")))
            outputs[name] = [s.token_ids for s in engine.generate(prompts, greedy).samples]
    if outputs["memory"] != outputs["disk"] or outputs["memory"] == start_output:
        raise SystemExit("the syncs did not load the same new weights (greedy outputs): the comparison is void")
    engine.close()
    mem, dsk = statistics.median(times["memory"]), statistics.median(times["disk"])
    print(f"tiny policy, {size_mb:.2f} MB of actor weights, vLLM-cpu engine, {args.syncs} syncs each (median):")
    print(f"  memory (trainer tensors -> engine)        {mem * 1000:8.1f} ms")
    print(f"  disk   (HF checkpoint write + reload)     {dsk * 1000:8.1f} ms   ({dsk / mem:.1f}x)")
    print(json.dumps({"memory_sync_s": round(mem, 4), "disk_sync_s": round(dsk, 4), "ratio": round(dsk / mem, 2),
                      "weights_mb": round(size_mb, 2), "syncs": args.syncs}))


if __name__ == "__main__":
    main()
