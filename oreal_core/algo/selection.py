"""Which samples of each group are trained on (Algorithm 1, lines 4-5).

Shapes: rewards (P, K) in {+1, -1}, graded (P, K) bool -> keep mask (P, K), bool.

A sample without a reward (``graded`` False: the judge could not grade it) is never kept.

OREAL drops prompts whose K samples are all right or all wrong (p in {0, 1}: no signal)
and keeps one random correct and one random incorrect sample from each other prompt, so
positives and negatives are balanced. The no-filter variant keeps everything (groups with
p in {0, 1} then have zero RLOO advantage and contribute only to the KL term).
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


def _outcomes(rewards: torch.Tensor, graded: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, incorrect) masks; a sample without a reward (not ``graded``) is neither."""
    require_ndim("rewards", rewards, 2)
    require_nonempty("rewards", rewards)
    if graded is None:
        graded = torch.ones(rewards.shape, dtype=torch.bool, device=rewards.device)
    graded = require_mask("graded", graded, tuple(rewards.shape))
    require_binary_rewards("rewards", rewards[graded])
    return graded & (rewards > 0), graded & (rewards < 0)


def select_pairs(rewards: torch.Tensor, generator: torch.Generator | None = None,
                 graded: torch.Tensor | None = None) -> torch.Tensor:
    """One uniformly random correct and one incorrect sample per prompt with 0 < p < 1."""
    correct, incorrect = _outcomes(rewards, graded)
    # A uniform draw per sample; the largest draw among the correct (incorrect) samples of a
    # row is a uniformly random correct (incorrect) sample. One draw serves both choices.
    draw = torch.rand(rewards.shape, generator=generator, device=rewards.device)
    pos_idx = torch.where(correct, draw, -1.0).argmax(dim=1)
    neg_idx = torch.where(incorrect, draw, -1.0).argmax(dim=1)
    mixed = correct.any(dim=1) & incorrect.any(dim=1)
    keep = torch.zeros_like(correct)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    keep[rows, pos_idx] = mixed
    keep[rows, neg_idx] = mixed
    return keep


def keep_all(rewards: torch.Tensor, generator: torch.Generator | None = None,
             graded: torch.Tensor | None = None) -> torch.Tensor:
    """Every graded sample is kept (the reference's ``filter_trajectory=False`` configs)."""
    correct, incorrect = _outcomes(rewards, graded)
    return correct | incorrect


SELECTIONS: dict[str, Callable[[torch.Tensor, torch.Generator | None, torch.Tensor | None], torch.Tensor]] = {
    "pair": select_pairs,
    "all": keep_all,
}


def group_pass_rates(rewards: torch.Tensor, graded: torch.Tensor | None = None) -> torch.Tensor:
    """p-hat per prompt, (P,): the fraction of the graded samples that are correct (NaN if none is)."""
    correct, incorrect = _outcomes(rewards, graded)
    return correct.float().sum(dim=1) / (correct | incorrect).float().sum(dim=1)
