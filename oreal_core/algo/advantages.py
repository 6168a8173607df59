"""Group advantages over the K samples of each prompt (OREAL_SPEC.md §1.2).

Shapes: rewards (P, K) in {+1, -1}, graded (P, K) bool -> advantages (P, K), float.

Computed on all K samples *before* filtering, as the reference does. With k correct out
of K (p = k/K), RLOO gives A+ = 2K(1-p)/(K-1) and A- = -2Kp/(K-1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from oreal_core.algo.checks import (
    require_binary_rewards,
    require_mask,
    require_ndim,
    require_nonempty,
)

GRPO_EPS = 1e-8


def rloo(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out baseline: A_i = r_i - mean_{j != i} r_j = (K r_i - sum_j r_j) / (K - 1)."""
    k = rewards.shape[1]
    return (k * rewards - rewards.sum(dim=1, keepdim=True)) / (k - 1)


def grpo(rewards: torch.Tensor) -> torch.Tensor:
    """Group normalisation: (r - mean) / (std + 1e-8), torch's unbiased std (the reference's)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=True)
    return (rewards - mean) / (std + GRPO_EPS)


def reinforce(rewards: torch.Tensor) -> torch.Tensor:
    """The raw reward: Table 2's REINFORCE baseline."""
    return rewards.clone()


ADVANTAGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rloo": rloo,
    "grpo": grpo,
    "reinforce": reinforce,
}


def group_advantages(rewards: torch.Tensor, kind: str = "rloo", graded: torch.Tensor | None = None) -> torch.Tensor:
    """Advantages (P, K) of rewards (P, K) in {+1, -1}; ``kind`` is rloo, grpo or reinforce.

    ``graded`` (P, K) bool marks the samples that have a reward (None: all). A group is
    computed over its graded samples only, as if the others had not been drawn; ungraded
    samples, and groups with too few graded samples for the baseline, get advantage 0.
    """
    if kind not in ADVANTAGES:
        raise ValueError(f"kind: unknown advantage {kind!r}; choose one of {sorted(ADVANTAGES)}")
    require_ndim("rewards", rewards, 2)
    require_nonempty("rewards", rewards)
    min_group = 1 if kind == "reinforce" else 2
    if rewards.shape[1] < min_group:
        raise ValueError(f"rewards: {kind} needs at least 2 samples per prompt, got K={rewards.shape[1]}")
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    advantage = ADVANTAGES[kind]
    if graded is None:
        require_binary_rewards("rewards", rewards)
        return advantage(rewards)
    graded = require_mask("graded", graded, tuple(rewards.shape))
    require_binary_rewards("rewards", rewards[graded])
    out = torch.zeros_like(rewards)
    complete = graded.all(dim=1)
    out[complete] = advantage(rewards[complete])  # the common case, vectorised
    for row in (~complete).nonzero().flatten().tolist():  # the same formula over the graded subset
        cols = graded[row]
        if int(cols.sum()) >= min_group:
            out[row, cols] = advantage(rewards[row, cols].unsqueeze(0))[0]
    return out
