"""Per-token estimators of KL(pi_theta || pi_ref) from log-probs of sampled tokens.

Shapes: logp, ref_logp (B, T) -> (B, T). With delta = ref_logp - logp:
  unbias (k3, the reference default): exp(delta) - delta - 1  (>= 0, unbiased, low variance)
  kl     (k1): -delta = logp - ref_logp                        (unbiased, can be negative)
  mse    (k2): delta^2 / 2                                      (biased, >= 0)
k3 and k2 are zero with zero gradient where the policy equals the reference; k1 is zero
there but its per-token gradient is grad(logp), zero only in expectation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


def k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return 0.5 * (ref_logp - logp) ** 2


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "unbias": k3,
    "kl": k1,
    "mse": k2,
}
