"""The OREAL policy objective and its ablation variants (OREAL_SPEC.md §1.2, paper Eq. 11).

Shapes: logp, ref_logp, mask, weights (B, T); advantages, is_positive (B,).
``logp`` is log pi_theta(y_t | x, y_<t) of each response token (with grad), ``ref_logp``
the frozen reference's, ``mask`` marks real response tokens (stop token included),
``weights`` are the token-RM importance weights (None = 1).

OREAL (the reference code's loss), over the kept set S:
  L+  = c+ * sum_{y+} A+ * sum_t w+_t * (-logp_t) / N+          behaviour cloning on positives
  L-  = -c- * sum_{y-} sum_t exp(logp_t - sg logp_t) * A- * w-_t / N-   reshaped policy gradient
  Lkl = beta * sum_{y in S} sum_t k(ref_logp_t - logp_t) / N_all  k3 KL by default
N+, N-, N_all are response-token counts of the *whole step* (all micro-batches, all ranks);
pass them in so that micro-batch losses sum to the step loss. Under data parallelism the
caller multiplies by the world size to undo gradient averaging, as the reference does.

Variants (Table 2 of the paper, chosen by name):
  oreal           as above
  oreal_no_bc     positives and negatives both as policy-gradient terms with OREAL's factors,
                  one normaliser N_all (no separate behaviour-cloning normalisation)
  policy_gradient -sum A * w * ratio / N_all over all kept samples, no factors: REINFORCE
                  with advantage "reinforce", GRPO-style shaping with advantage "grpo"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from oreal_core.algo.checks import (
    require_finite,
    require_mask,
    require_ndim,
    require_nonempty,
    require_shape,
)
from oreal_core.algo.kl import KL_ESTIMATORS


class LossSettings(Protocol):
    """What the loss reads from ``oreal_core.config.LossConfig`` (kept as a protocol so the
    algorithm package does not import the config machinery)."""

    variant: str
    positive_loss_factor: float
    negative_loss_factor: float
    pos_mult_adv: bool
    kl_coef: float
    kl_type: str


@dataclass(frozen=True)
class TokenCounts:
    """Response-token counts of a whole step: positives, negatives, all."""

    pos: float
    neg: float
    all: float


def token_counts(mask: torch.Tensor, is_positive: torch.Tensor) -> TokenCounts:
    """Local counts of one batch; sum (all-reduce) them over micro-batches and ranks."""
    mask = mask.bool()
    pos = int((mask & is_positive.bool()[:, None]).sum())
    total = int(mask.sum())
    return TokenCounts(pos=pos, neg=total - pos, all=total)


def _ratio(logp: torch.Tensor) -> torch.Tensor:
    """exp(logp - sg(logp)): value 1, gradient grad(logp). The on-policy importance ratio."""
    return torch.exp(logp - logp.detach())


def _safe_div(total: torch.Tensor, count: float) -> torch.Tensor:
    return total / count if count > 0 else total * 0.0


def _oreal_terms(logp, adv, w, pos, neg, cfg: LossSettings, n: TokenCounts) -> dict[str, torch.Tensor]:
    pos_adv = adv if cfg.pos_mult_adv else torch.ones_like(adv)
    bc = (pos_adv * w * -logp * pos).sum()
    pg = (_ratio(logp) * adv * w * neg).sum()
    return {
        "loss_pos": cfg.positive_loss_factor * _safe_div(bc, n.pos),
        "loss_neg": -cfg.negative_loss_factor * _safe_div(pg, n.neg),
    }


def _oreal_no_bc_terms(logp, adv, w, pos, neg, cfg: LossSettings, n: TokenCounts) -> dict[str, torch.Tensor]:
    pos_adv = adv if cfg.pos_mult_adv else torch.ones_like(adv)
    ratio = _ratio(logp)
    pos_pg = (ratio * pos_adv * w * pos).sum()
    neg_pg = (ratio * adv * w * neg).sum()
    return {
        "loss_pos": -cfg.positive_loss_factor * _safe_div(pos_pg, n.all),
        "loss_neg": -cfg.negative_loss_factor * _safe_div(neg_pg, n.all),
    }


def _policy_gradient_terms(logp, adv, w, pos, neg, cfg: LossSettings, n: TokenCounts) -> dict[str, torch.Tensor]:
    ratio = _ratio(logp)
    return {
        "loss_pos": -_safe_div((ratio * adv * w * pos).sum(), n.all),
        "loss_neg": -_safe_div((ratio * adv * w * neg).sum(), n.all),
    }


LOSS_VARIANTS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "oreal": _oreal_terms,
    "oreal_no_bc": _oreal_no_bc_terms,
    "policy_gradient": _policy_gradient_terms,
}


def _check_inputs(logp, ref_logp, mask, advantages, weights, is_positive) -> torch.Tensor:
    require_ndim("logp", logp, 2)
    require_nonempty("logp", logp)
    shape = tuple(logp.shape)
    require_shape("ref_logp", ref_logp, shape)
    mask = require_mask("mask", mask, shape)
    require_shape("advantages", advantages, (shape[0],))
    require_shape("is_positive", is_positive, (shape[0],))
    if weights is not None:
        require_shape("weights", weights, shape)
        require_finite("weights", weights, where=mask)
    require_finite("logp", logp, where=mask)
    require_finite("ref_logp", ref_logp, where=mask)
    require_finite("advantages", advantages)
    return mask


def _resolve_counts(local: TokenCounts, given: tuple[float | None, float | None, float | None]) -> TokenCounts:
    resolved = []
    for name, have, count in zip(("num_pos_tokens", "num_neg_tokens", "num_tokens"),
                                 (local.pos, local.neg, local.all), given, strict=True):
        count = have if count is None else float(count)
        if count < have:
            raise ValueError(f"{name}={count}: smaller than this batch's own {have} tokens")
        resolved.append(count)
    return TokenCounts(*resolved)


def oreal_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
               weights: torch.Tensor | None, is_positive: torch.Tensor, cfg: LossSettings, *,
               num_pos_tokens: float | None = None, num_neg_tokens: float | None = None,
               num_tokens: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step loss of a (micro-)batch and its metrics (detached 0-d tensors).

    Global token counts default to this batch's own (a single micro-batch on one rank).
    Raises ValueError on bad shapes, non-finite inputs, or a non-finite result, naming the
    argument or the loss term.
    """
    if cfg.variant not in LOSS_VARIANTS:
        raise ValueError(f"cfg.variant: unknown loss variant {cfg.variant!r}; choose one of {sorted(LOSS_VARIANTS)}")
    if cfg.kl_type not in KL_ESTIMATORS:
        raise ValueError(f"cfg.kl_type: unknown KL estimator {cfg.kl_type!r}; choose one of {sorted(KL_ESTIMATORS)}")
    mask = _check_inputs(logp, ref_logp, mask, advantages, weights, is_positive)
    counts = _resolve_counts(token_counts(mask, is_positive), (num_pos_tokens, num_neg_tokens, num_tokens))

    dtype = logp.dtype
    positive = is_positive.bool()[:, None]
    pos = (mask & positive).to(dtype)
    neg = (mask & ~positive).to(dtype)
    # Padding may hold garbage (even NaN); zero it so 0 * NaN cannot leak into the sums.
    logp = torch.where(mask, logp, torch.zeros_like(logp))
    ref_logp = torch.where(mask, ref_logp.detach(), torch.zeros_like(logp))
    w = torch.ones_like(logp) if weights is None else torch.where(mask, weights.detach().to(dtype), torch.zeros_like(logp))
    adv = advantages.detach().to(dtype)[:, None]

    terms = LOSS_VARIANTS[cfg.variant](logp, adv, w, pos, neg, cfg, counts)
    kl_tokens = KL_ESTIMATORS[cfg.kl_type](logp, ref_logp) * mask.to(dtype)
    terms["loss_kl"] = cfg.kl_coef * _safe_div(kl_tokens.sum(), counts.all)
    loss = terms["loss_pos"] + terms["loss_neg"] + terms["loss_kl"]

    for name, value in terms.items():
        if not bool(torch.isfinite(value.detach())):
            raise ValueError(f"{name}: non-finite value {float(value.detach()):.4g}; refusing the step")
    with torch.no_grad():
        n_local = mask.sum().clamp(min=1)
        metrics = {name: value.detach() for name, value in terms.items()}
        metrics["loss"] = loss.detach()
        metrics["kl"] = kl_tokens.sum() / n_local
        metrics["mean_weight_pos"] = (w * pos).sum() / pos.sum().clamp(min=1)
        metrics["mean_weight_neg"] = (w * neg).sum() / neg.sum().clamp(min=1)
        metrics["num_pos_tokens"] = pos.sum()
        metrics["num_neg_tokens"] = neg.sum()
    return loss, metrics
