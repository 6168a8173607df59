"""Per-step training metrics: sums over micro-batches (and ranks), then step-level values.

Besides the losses, the trainer measures the rollout engine against itself (docs/health.md):
on every kept token whose rollout log-prob is known, delta = log pi_trainer - log pi_engine.
Both are the same weights' raw distribution, so delta is numerical noise (~1e-5 in fp32,
~1e-2 in bf16) unless the engine samples from other weights than the trainer holds.
It also measures the token RM it trains with (rm/ metrics, docs/token-rm.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oreal_core.algo.rm_health import padded, rm_health
from oreal_core.train.batching import MicroBatch
from oreal_core.train.results import TokenRMRecord
from oreal_core.types import ScoredSample


class StepSums:
    """Additive statistics of one step; all-reduce ``values`` across ranks, then finish."""

    # exp(delta) of a wildly stale engine overflows; past this it is "huge" either way.
    RATIO_LOG_CLAMP = 20.0

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        # Max-reduced across ranks, not summed; every rank holds the same keys for the collective.
        self.maxima: dict[str, float] = {"logp_abs_delta_max": 0.0}

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

    def add_mismatch(self, logp: torch.Tensor, mb: MicroBatch) -> None:
        """Trainer vs rollout-engine log-probs on the same tokens; ``logp`` (B, T)."""
        known = mb.rollout_mask & mb.mask
        delta = (logp.detach().double() - mb.rollout_logp.double())[known]
        ratio = delta.clamp(-self.RATIO_LOG_CLAMP, self.RATIO_LOG_CLAMP).exp()
        self._add("logp_compared_tokens", delta.numel())
        self._add("logp_abs_delta_sum", delta.abs().sum())
        self._add("logp_ratio_sum", ratio.sum())
        self._add("logp_ratio_sq_sum", (ratio * ratio).sum())
        if delta.numel():
            self.maxima["logp_abs_delta_max"] = max(self.maxima["logp_abs_delta_max"], float(delta.abs().max()))

    def add_rm(self, metrics: dict[str, torch.Tensor], mb: MicroBatch) -> None:
        n = len(mb.rows)
        n_pos = float(mb.is_positive.sum())
        self._add("rm_loss_sum", metrics["rm_loss"] * n)
        self._add("rm_correct", metrics["rm_accuracy"] * n)
        self._add("rm_logit_pos_sum", metrics["rm_logit_pos"] * n_pos)
        self._add("rm_logit_neg_sum", metrics["rm_logit_neg"] * (n - n_pos))


def finish_metrics(sums: dict[str, float], counts: dict[str, float], elapsed_s: float,
                   maxima: dict[str, float] | None = None) -> dict[str, float]:
    """Step-level metrics from summed statistics (and max-reduced ``maxima``) and the step's global counts."""
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
    out.update(mismatch_metrics(sums, maxima or {}))
    if "rm_loss_sum" in sums:
        out.update(
            rm_loss=sums["rm_loss_sum"] / samples,
            rm_accuracy=sums["rm_correct"] / samples,
            rm_logit_pos=sums["rm_logit_pos_sum"] / max(pos_samples, 1.0),
            rm_logit_neg=sums["rm_logit_neg_sum"] / max(samples - pos_samples, 1.0),
        )
    return out


def mismatch_metrics(sums: dict[str, float], maxima: dict[str, float]) -> dict[str, float]:
    """health/logprob_*: mean and max |delta| and the mean and spread of exp(delta); none if no
    token had a rollout log-prob (a batch from scored.parquet)."""
    n = sums.get("logp_compared_tokens", 0.0)
    if not n:
        return {}
    mean_ratio = sums["logp_ratio_sum"] / n
    variance = max(sums["logp_ratio_sq_sum"] / n - mean_ratio * mean_ratio, 0.0)
    return {"health/logprob_abs_delta_mean": sums["logp_abs_delta_sum"] / n,
            "health/logprob_abs_delta_max": maxima.get("logp_abs_delta_max", 0.0),
            "health/logprob_ratio_mean": mean_ratio, "health/logprob_ratio_std": variance ** 0.5,
            "health/logprob_compared_tokens": n}


def rm_health_metrics(records: Sequence[TokenRMRecord], samples: Sequence[ScoredSample]) -> dict[str, float]:
    """rm/ metrics (docs/token-rm.md) from the token-RM records of the step's own forward: the
    scores its BCE was taken on and the weights its policy loss used, i.e. the RM *before* the
    step's update. ``records`` are in ``samples`` order (the gathered batch order)."""
    if not records:
        return {}
    if [(r.prompt_id, r.sample_idx) for r in records] != [(s.prompt_id, s.sample_idx) for s in samples]:
        raise ValueError("token-RM records are not in the batch's sample order")
    scores, mask = padded([r.scores for r in records])
    weights, _ = padded([r.weights for r in records])
    prompts: dict[str, int] = {}
    group = torch.tensor([prompts.setdefault(s.prompt_id, len(prompts)) for s in samples])
    return rm_health(scores, weights, mask, torch.tensor([s.is_positive for s in samples]), group)
