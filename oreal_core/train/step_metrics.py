"""Per-step training metrics: sums over micro-batches (and ranks), then step-level values."""

from __future__ import annotations

import torch

from oreal_core.train.batching import MicroBatch


class StepSums:
    """Additive statistics of one step; all-reduce ``values`` across ranks, then finish."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def _add(self, key: str, value: float | torch.Tensor) -> None:
        self.values[key] = self.values.get(key, 0.0) + float(value)

    def add_actor(self, metrics: dict[str, torch.Tensor], entropy: torch.Tensor, mb: MicroBatch) -> None:
        # Loss terms arrive normalised by the step's global counts: they add up to the step loss.
        for name in ("loss", "loss_pos", "loss_neg", "loss_kl"):
            self._add(name, metrics[name])
        n_pos, n_neg = float(metrics["num_pos_tokens"]), float(metrics["num_neg_tokens"])
        self._add("kl_sum", metrics["kl"] * (n_pos + n_neg))
        self._add("weight_pos_sum", metrics["mean_weight_pos"] * n_pos)
        self._add("weight_neg_sum", metrics["mean_weight_neg"] * n_neg)
        self._add("entropy_sum", (entropy.detach() * mb.mask).sum())
        self._add("padded_tokens", mb.padded_tokens)
        self._add("micro_batches", 1)

    def add_rm(self, metrics: dict[str, torch.Tensor], mb: MicroBatch) -> None:
        n = len(mb.rows)
        n_pos = float(mb.is_positive.sum())
        self._add("rm_loss_sum", metrics["rm_loss"] * n)
        self._add("rm_correct", metrics["rm_accuracy"] * n)
        self._add("rm_logit_pos_sum", metrics["rm_logit_pos"] * n_pos)
        self._add("rm_logit_neg_sum", metrics["rm_logit_neg"] * (n - n_pos))


def finish_metrics(sums: dict[str, float], counts: dict[str, float], elapsed_s: float) -> dict[str, float]:
    """Step-level metrics from summed statistics and the step's global counts."""
    tokens, samples = counts["tokens"], counts["samples"]
    pos_samples = counts["pos_samples"]
    out = {k: sums[k] for k in ("loss", "loss_pos", "loss_neg", "loss_kl", "padded_tokens", "micro_batches")}
    out.update(
        kl=sums["kl_sum"] / tokens,
        entropy=sums["entropy_sum"] / tokens,
        mean_weight_pos=sums["weight_pos_sum"] / max(counts["pos_tokens"], 1.0),
        mean_weight_neg=sums["weight_neg_sum"] / max(counts["neg_tokens"], 1.0),
        num_samples=samples, num_positive=pos_samples, num_tokens=tokens,
        num_pos_tokens=counts["pos_tokens"], num_neg_tokens=counts["neg_tokens"],
        step_s=elapsed_s, tokens_per_s=tokens / elapsed_s,
        total_tokens_per_s=(tokens + counts["prompt_tokens"]) / elapsed_s,
    )
    if "rm_loss_sum" in sums:
        out.update(
            rm_loss=sums["rm_loss_sum"] / samples,
            rm_accuracy=sums["rm_correct"] / samples,
            rm_logit_pos=sums["rm_logit_pos_sum"] / max(pos_samples, 1.0),
            rm_logit_neg=sums["rm_logit_neg_sum"] / max(samples - pos_samples, 1.0),
        )
    return out
