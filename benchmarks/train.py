"""Train-step time: our DeepSpeed stage vs a plain PyTorch loop doing the same math.

Both sides start from the same tiny policy and train the same batches: reference
log-probs, token-RM scores and weights, RM update (sequence BCE), actor update (OREAL
loss), micro-batched by the same token budget, AdamW with the same LRs and clip 1. The
baseline is the obvious hand-written loop (torch AdamW, ``clip_grad_norm_``), sharing our
model wrappers and the pure loss functions; ours is ``Trainer.train_step`` (two ZeRO-2
engines on CPU/gloo). The first step of each side is compared (same loss, same weights
after the update) so the timing compares equal work. Steps alternate between the two
sides so machine noise hits both; medians are reported.

    .venv/bin/python benchmarks/train.py [--steps 6] [--prompts 32]

Last line: JSON with deepspeed_step_s, torch_step_s, ratio (torch / deepspeed time).
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

# Run from a checkout (`.venv/bin/python benchmarks/train.py`): import this tree's package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oreal_core.algo.losses import oreal_loss  # noqa: E402
from oreal_core.algo.token_rm import sequence_loss, token_weights  # noqa: E402
from oreal_core.config import load_config  # noqa: E402
from oreal_core.models.tiny import build_tiny_policy  # noqa: E402
from oreal_core.train.batching import micro_batches  # noqa: E402
from oreal_core.train.models import build_actor, build_reference, build_token_rm, load_spec  # noqa: E402
from oreal_core.train.trainer import Trainer  # noqa: E402
from oreal_core.types import ScoredBatch, ScoredSample  # noqa: E402


def make_batch(step: int, prompts: int, seed: int) -> ScoredBatch:
    """Tiny-cpu-sized kept set: one correct + one incorrect sample per prompt."""
    gen = torch.Generator().manual_seed(seed + step)
    samples = []
    for p in range(prompts):
        prompt = tuple(torch.randint(3, 250, (int(torch.randint(30, 50, (1,), generator=gen)),), generator=gen).tolist())
        for idx, positive in enumerate((True, False)):
            n = int(torch.randint(40, 96, (1,), generator=gen))
            response = tuple(torch.randint(3, 250, (n,), generator=gen).tolist())
            samples.append(ScoredSample(f"q{p}", idx, prompt, response, 0.9 if positive else -0.9, positive))
    return ScoredBatch(step=step, samples=tuple(samples))


class TorchLoop:
    """The baseline: the same step as plain PyTorch (no DeepSpeed). On a ``cuda`` device it is
    also benchmarks/gpu_check.py's train step where DeepSpeed is not installed."""

    def __init__(self, cfg, policy_dir, device: torch.device | None = None) -> None:
        device = device or torch.device("cpu")
        spec = load_spec(cfg.model, policy_dir, on_gpu=device.type == "cuda")
        torch.manual_seed(cfg.run.seed)
        self.cfg, self.device = cfg, device
        # dtype too: the RM's new head is made in fp32 whatever the body's dtype (DeepSpeed casts it)
        self.actor, self.rm = (m.to(device, spec.dtype) for m in (build_actor(spec), build_token_rm(spec)))
        self.reference = build_reference(spec, device)
        self.opt_actor = self._adamw(self.actor, cfg.actor.optim)
        self.opt_rm = self._adamw(self.rm, cfg.token_rm.optim)

    @staticmethod
    def _adamw(module, optim):
        return torch.optim.AdamW(module.parameters(), lr=optim.lr, betas=optim.betas, eps=optim.eps,
                                 weight_decay=optim.weight_decay)

    def step(self, batch: ScoredBatch) -> float:
        samples, cfg = list(batch.samples), self.cfg
        pos = sum(len(s.token_ids) for s in samples if s.is_positive)
        total = batch.num_response_tokens
        loss_sum = 0.0
        for mb in micro_batches(samples, cfg.train.micro_batch_tokens, pad_id=0):
            mb = mb.to(self.device)
            with torch.no_grad():
                ref_logp, _ = self.reference(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
            scores = self.rm(mb.input_ids, mb.attention_mask, mb.positions)
            weights = token_weights(scores.detach(), mb.mask, mb.is_positive)
            rm_loss, _ = sequence_loss(scores, mb.mask, mb.is_positive)
            (rm_loss * len(mb.rows) / len(samples)).backward()
            logp, _ = self.actor(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
            loss, _ = oreal_loss(logp, ref_logp, mb.mask, mb.advantages, weights, mb.is_positive, cfg.loss,
                                 num_pos_tokens=pos, num_neg_tokens=total - pos, num_tokens=total)
            loss.backward()
            loss_sum += float(loss.detach())
        for module, opt, optim in ((self.rm, self.opt_rm, cfg.token_rm.optim), (self.actor, self.opt_actor, cfg.actor.optim)):
            torch.nn.utils.clip_grad_norm_(module.parameters(), optim.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss_sum


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def max_weight_gap(ours: Trainer, base: TorchLoop) -> float:
    theirs = dict(base.actor.named_parameters())
    return max(float((p.detach() - theirs[k].detach()).abs().max()) for k, p in ours.actor.engine.module.named_parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=32)
    args = parser.parse_args()
    # Constant LRs and no actor freeze: every timed step does the full actor + RM update.
    cfg = load_config("tiny-cpu", ["actor.freeze_steps=0", "actor.optim.warmup_steps=0",
                                   f"run.total_steps={args.steps + 5}"])
    policy_dir = build_tiny_policy(tempfile.mkdtemp(prefix="bench-train-"), seed=0)
    t_init, ours = timed(Trainer, cfg, policy_dir)
    base = TorchLoop(cfg, policy_dir)

    first = make_batch(0, args.prompts, seed=0)
    ours_res = ours.train_step(first)  # warm-up (first-touch allocations) and equivalence check
    base_loss = base.step(first)
    loss_gap = abs(ours_res.metrics.as_dict()["loss"] - base_loss)
    weight_gap = max_weight_gap(ours, base)

    ds_times, torch_times = [], []
    for step in range(1, args.steps + 1):
        batch = make_batch(step, args.prompts, seed=0)
        t, _ = timed(ours.train_step, batch)
        ds_times.append(t)
        t, _ = timed(base.step, batch)
        torch_times.append(t)
    tokens = batch.num_response_tokens
    ds_s, torch_s = statistics.median(ds_times), statistics.median(torch_times)
    result = {
        "deepspeed_step_s": round(ds_s, 4), "torch_step_s": round(torch_s, 4), "ratio": round(torch_s / ds_s, 3),
        "deepspeed_tok_s": round(tokens / ds_s, 1), "torch_tok_s": round(tokens / torch_s, 1),
        "samples_per_step": len(batch.samples), "response_tokens_per_step": tokens, "steps": args.steps,
        "first_step_loss_gap": loss_gap, "first_step_max_weight_gap": weight_gap,
        "trainer_init_s": round(t_init, 2), "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"{'':24}{'deepspeed (ours)':>18}{'plain torch':>14}")
    print(f"{'step time, median (s)':24}{ds_s:>18.4f}{torch_s:>14.4f}")
    print(f"{'response tokens / s':24}{tokens / ds_s:>18.1f}{tokens / torch_s:>14.1f}")
    print(f"ratio torch/deepspeed = {torch_s / ds_s:.3f} (target >= 0.9); {len(batch.samples)} samples, "
          f"{tokens} response tokens per step; same first step: loss gap {loss_gap:.2e}, weight gap {weight_gap:.2e}; "
          f"load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
