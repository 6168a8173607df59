"""Learning-rate schedules and the actor freeze (OREAL_SPEC.md §2-3).

Both optimisers use a linear warm-up to the peak LR, then cosine decay to ``min_lr`` at
``total_steps``. The actor is frozen for the first ``freeze_steps`` while the token RM
warms up (its zero-initialised head gives q = 0.5, hence zero token weights).

Reference quirk, kept by default: the actor's scheduler keeps stepping during the freeze,
so its warm-up is used up while frozen and the first actor update is at (almost) peak LR.
With ``advances_while_frozen=False`` the actor's schedule starts when the actor does.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """LR at 0-based ``step``: (step+1)/warmup * lr during warm-up, then cosine to min_lr.

    Steps past ``total_steps`` stay at ``min_lr``.
    """
    if step < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    if min_lr > lr:
        raise ValueError(f"min_lr: {min_lr} exceeds lr {lr}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def actor_frozen(step: int, freeze_steps: int) -> bool:
    """True while only the token RM trains (steps 0 .. freeze_steps-1)."""
    return step < freeze_steps


def actor_schedule_step(step: int, freeze_steps: int, advances_while_frozen: bool) -> int:
    """The step index the actor's LR schedule sees at RL step ``step`` (actor not frozen)."""
    return step if advances_while_frozen else max(0, step - freeze_steps)
