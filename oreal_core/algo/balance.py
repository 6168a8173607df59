"""Difficulty balancing of the prompt pool by pre-computed pass rate (OREAL_SPEC.md §3).

Shapes: pass_rates (N,) in [0, 1] -> repeat counts (N,), int64.

The reference repeats hard prompts more often: [0, 0.2) x6, [0.2, 0.4) x4, [0.4, 0.6) x4,
[0.6, 0.8) x2; prompts at >= 0.8 are dropped (a rate outside every band repeats 0 times).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oreal_core.algo.checks import require_finite, require_ndim

Band = tuple[float, float, int]

REFERENCE_BANDS: tuple[Band, ...] = ((0.0, 0.2, 6), (0.2, 0.4, 4), (0.4, 0.6, 4), (0.6, 0.8, 2))


def _check_bands(bands: Sequence[Band]) -> None:
    previous_high = 0.0
    for band in sorted(bands):
        low, high, repeat = band
        if not (0.0 <= low < high <= 1.0) or repeat < 0 or low < previous_high:
            raise ValueError(f"bands: {band!r} invalid (need 0 <= low < high <= 1, repeat >= 0, no overlap)")
        previous_high = high


def difficulty_balance(pass_rates: torch.Tensor, bands: Sequence[Band] = REFERENCE_BANDS) -> torch.Tensor:
    """Repeat count of each prompt: the ``repeat`` of the band [low, high) holding its rate.

    The top band's upper edge is inclusive when it is 1.0, so a band (0.8, 1.0, r) keeps
    prompts that are always solved.
    """
    require_ndim("pass_rates", pass_rates, 1)
    require_finite("pass_rates", pass_rates)
    if bool(((pass_rates < 0) | (pass_rates > 1)).any()):
        raise ValueError("pass_rates: values must lie in [0, 1]")
    _check_bands(bands)
    counts = torch.zeros(pass_rates.shape, dtype=torch.int64, device=pass_rates.device)
    for low, high, repeat in bands:
        upper = pass_rates <= high if high == 1.0 else pass_rates < high
        counts[(pass_rates >= low) & upper] = repeat
    return counts
