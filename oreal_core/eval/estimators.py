"""Evaluation estimators: unbiased pass@k and bootstrap confidence intervals.

pass@k for one problem with n samples of which c are correct is the probability that a
random size-k subset holds at least one correct sample (Chen et al. 2021, "Evaluating
Large Language Models Trained on Code"): 1 - C(n-c, k) / C(n, k). It is computed as a
running product, which stays exact in floating point where the binomials overflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem: n samples, c correct."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if n < 1:
        raise ValueError(f"n: need at least one sample, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c: must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k: must be in [1, n={n}], got {k}")
    if n - c < k:  # every size-k subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float
    confidence: float


def mean_with_bootstrap(per_problem: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95,
                        seed: int = 0) -> Interval:
    """Mean over problems and its percentile bootstrap interval (problems resampled)."""
    values = np.asarray(per_problem, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per_problem: need a non-empty list of scores, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("per_problem: contains NaN or inf")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(value=float(values.mean()), low=float(low), high=float(high), confidence=confidence)
