"""The on-policy token-level reward model's loss and its token importance weights
(OREAL_SPEC.md §2; paper Eq. 12 and Algorithm 1 lines 6-7).

Shapes: scores (B, T) are the RM head's outputs at the positions that *predict* each
response token; mask (B, T) marks real response tokens; is_positive / correct (B,) bool.

The RM is trained so that sigmoid(mean token score) predicts the outcome. The prefix
score c_t = mean(s_1..s_t) then estimates whether the prefix leads to a correct answer,
q_t = sigmoid(c_t), and tokens are weighted by how decisive they are:
w+ = max(0, 2q - 1) on correct samples, w- = max(0, 1 - 2q) on incorrect ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from oreal_core.algo.checks import (
    require_finite,
    require_mask,
    require_ndim,
    require_nonempty,
    require_shape,
)


def _check(scores: torch.Tensor, mask: torch.Tensor, flags: torch.Tensor, flags_name: str) -> torch.Tensor:
    require_ndim("scores", scores, 2)
    require_nonempty("scores", scores)
    mask = require_mask("mask", mask, tuple(scores.shape))
    require_shape(flags_name, flags, (scores.shape[0],))
    require_finite("scores", scores, where=mask)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mask: every sample needs at least one response token")
    return mask


def prefix_probability(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q_t = sigmoid(cumulative mean of the masked scores up to t), (B, T); 0.5 on padding."""
    scores = torch.where(mask, scores, torch.zeros_like(scores))
    count = mask.cumsum(dim=1).clamp(min=1).to(scores.dtype)
    q = torch.sigmoid(scores.cumsum(dim=1) / count)
    return torch.where(mask, q, torch.full_like(q, 0.5))


def _threshold(q: torch.Tensor, mask: torch.Tensor, is_positive: torch.Tensor,
               pos_threshold: float, neg_threshold: float, topk_ratio: float) -> torch.Tensor:
    """Linear rescale of q above a threshold: clamp((q - th) / (1 - th), 0, 1) for positives,
    the same on 1 - q for negatives. Thresholds 0.5 give max(0, 2q-1) and max(0, 1-2q)."""
    pos = ((q - pos_threshold) / (1.0 - pos_threshold)).clamp(0.0, 1.0)
    neg = (((1.0 - q) - neg_threshold) / (1.0 - neg_threshold)).clamp(0.0, 1.0)
    return torch.where(is_positive[:, None], pos, neg)


def _topk(q: torch.Tensor, mask: torch.Tensor, is_positive: torch.Tensor,
          pos_threshold: float, neg_threshold: float, topk_ratio: float) -> torch.Tensor:
    """Per sample, keep the top ``ratio`` of tokens by q (positives) or 1 - q (negatives),
    min-max scale the kept values to [0, 1] and zero the rest."""
    key = torch.where(is_positive[:, None], q, 1.0 - q)
    key = torch.where(mask, key, torch.full_like(key, -1.0))  # padding sorts last
    n_tokens = mask.sum(dim=1)
    k = (n_tokens.to(q.dtype) * topk_ratio).floor().long().clamp(min=1)  # (B,)
    ordered, order = key.sort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(key.shape[1], device=key.device).expand_as(order))
    kept = (rank < k[:, None]) & mask
    top = ordered[:, 0:1]
    bottom = ordered.gather(1, (k - 1)[:, None])
    span = top - bottom
    scaled = torch.where(span > 0, (key - bottom) / span.clamp(min=torch.finfo(q.dtype).tiny), torch.ones_like(key))
    return torch.where(kept, scaled.clamp(0.0, 1.0), torch.zeros_like(key))


WEIGHTINGS: dict[str, Callable[..., torch.Tensor]] = {"threshold": _threshold, "topk": _topk}


@torch.no_grad()
def token_weights(scores: torch.Tensor, mask: torch.Tensor, is_positive: torch.Tensor,
                  mode: str = "threshold", *, pos_threshold: float = 0.5, neg_threshold: float = 0.5,
                  topk_ratio: float = 0.25) -> torch.Tensor:
    """Token importance weights (B, T) in [0, 1], detached; 0 on padding.

    Computed from the RM *before* its update on this batch, as the reference does.
    """
    if mode not in WEIGHTINGS:
        raise ValueError(f"mode: unknown token weighting {mode!r}; choose one of {sorted(WEIGHTINGS)}")
    mask = _check(scores, mask, is_positive, "is_positive")
    q = prefix_probability(scores.float(), mask)
    weights = WEIGHTINGS[mode](q, mask, is_positive.bool(), pos_threshold, neg_threshold, topk_ratio)
    return torch.where(mask, weights, torch.zeros_like(weights))


def sequence_loss(scores: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BCE(sigmoid(mean token score), 1[correct]) averaged over the B samples (paper Eq. 12).

    Returns (loss, metrics); metrics hold the RM's accuracy on this batch and the mean
    sequence logit of correct and incorrect samples, detached.
    """
    mask = _check(scores, mask, correct, "correct")
    maskf = mask.to(scores.dtype)
    logit = (scores * maskf).sum(dim=1) / maskf.sum(dim=1)  # (B,)
    label = correct.to(scores.dtype)
    loss = F.binary_cross_entropy_with_logits(logit, label)
    with torch.no_grad():
        pred = logit > 0
        metrics = {
            "rm_loss": loss.detach(),
            "rm_accuracy": (pred == correct.bool()).float().mean(),
            "rm_logit_pos": _masked_mean(logit, correct.bool()),
            "rm_logit_neg": _masked_mean(logit, ~correct.bool()),
        }
    return loss, metrics


def _masked_mean(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    return x[where].mean() if bool(where.any()) else x.new_zeros(())
