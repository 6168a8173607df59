"""Two models on the same problems: the pass@1 difference, its interval, and McNemar's test.

The retraining gate (DESIGN.md §10) compares a challenger with the champion on the same
frozen problems, so the comparison is *paired*: each problem contributes the difference of
its two scores. Problems vary far more in difficulty than the two models differ, so the
paired interval is much narrower than the difference of two independent intervals.

- ``gain``: mean over problems of (b - a), with a percentile bootstrap over problems
  (estimators.mean_with_bootstrap: fixed seed, so the same records give the same interval).
- ``gain_normal``: the same mean with a normal-approximation interval (mean +- z * sd / sqrt n),
  a cross-check that needs no resampling.
- ``mcnemar_p``: the exact two-sided McNemar test, i.e. a binomial test of the discordant
  pairs (b right and a wrong: ``gained``; the reverse: ``lost``) against p = 1/2. It is defined
  for one verdict per problem (greedy pass@1), so it is None when a score is fractional
  (several samples per problem); the bootstrap covers that case.

Pure functions over plain mappings (problem id -> score in [0, 1]); no lake, no engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from oreal_core.eval.estimators import Interval, mean_with_bootstrap


class PairingError(ValueError):
    """The two score tables do not cover the same problems (or are empty or out of range)."""


@dataclass(frozen=True)
class PairedComparison:
    """Model b against model a on the same problems (b - a: positive means b is better)."""

    problems: int
    a_pass1: Interval
    b_pass1: Interval
    gain: Interval  # paired percentile bootstrap
    gain_normal: Interval  # normal approximation
    gained: int  # problems where b scores higher than a (b right, a wrong for 0/1 scores)
    lost: int  # problems where a scores higher than b
    mcnemar_p: float | None  # exact two-sided; None unless every score is 0 or 1


def paired_arrays(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The problem ids (sorted) and the two score arrays in that order.

    Refuses tables over different problems: a difference over mismatched sets would mix the
    models' gap with the difficulty of the problems only one of them saw."""
    if not a or not b:
        raise PairingError(f"need scores of both models (a has {len(a)} problems, b has {len(b)})")
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        raise PairingError(f"the two models were scored on different problems: {len(only_a)} only in a "
                           f"({', '.join(only_a[:5])}{' ...' if len(only_a) > 5 else ''}), {len(only_b)} only in b "
                           f"({', '.join(only_b[:5])}{' ...' if len(only_b) > 5 else ''}); evaluate both on the "
                           "same frozen problems")
    ids = sorted(a)
    a_scores = np.array([a[p] for p in ids], dtype=np.float64)
    b_scores = np.array([b[p] for p in ids], dtype=np.float64)
    for name, scores in (("a", a_scores), ("b", b_scores)):
        if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
            raise PairingError(f"scores of {name} must be pass@1 values in [0, 1]")
    return ids, a_scores, b_scores


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value: P(a Binomial(gained + lost, 1/2) is at least as far from
    its mean as observed), i.e. 2 * P(X <= min(gained, lost)), capped at 1."""
    if gained < 0 or lost < 0:
        raise ValueError(f"discordant counts must be >= 0, got {gained} and {lost}")
    n = gained + lost
    if n == 0:  # no discordant pair: no evidence either way
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1))
    return min(1.0, 2 * tail / 2**n)


def normal_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean and its normal-approximation interval (sample sd; zero width for one value)."""
    mean = float(values.mean())
    half = 0.0
    if values.size > 1:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        half = z * float(values.std(ddof=1)) / math.sqrt(values.size)
    return Interval(value=mean, low=mean - half, high=mean + half, confidence=confidence)


def compare(a: Mapping[str, float], b: Mapping[str, float], *, resamples: int = 2000, confidence: float = 0.95,
            seed: int = 0) -> PairedComparison:
    """Compare b with a, problem by problem (joined by problem id)."""
    _, a_scores, b_scores = paired_arrays(a, b)
    diff = b_scores - a_scores
    binary = bool(np.isin(a_scores, (0.0, 1.0)).all() and np.isin(b_scores, (0.0, 1.0)).all())
    gained, lost = int((diff > 0).sum()), int((diff < 0).sum())
    bootstrap = {"resamples": resamples, "confidence": confidence, "seed": seed}
    return PairedComparison(
        problems=int(diff.size),
        a_pass1=mean_with_bootstrap(a_scores, **bootstrap),
        b_pass1=mean_with_bootstrap(b_scores, **bootstrap),
        gain=mean_with_bootstrap(diff, **bootstrap),
        gain_normal=normal_interval(diff, confidence),
        gained=gained, lost=lost,
        mcnemar_p=mcnemar_exact(gained, lost) if binary else None,
    )


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str  # one line per benchmark, human-readable, stored with the registry decision


def decide(comparisons: Mapping[str, PairedComparison], *, guards: Sequence[str] = (), min_gain: float = 0.0,
           max_regression: float = 0.02) -> GateDecision:
    """Promote b when, on every benchmark that is not a guard, the lower bound of the paired gain
    interval is above ``min_gain``, and on every guard benchmark the gain (point estimate) is
    not below ``-max_regression``. ``comparisons``: benchmark name -> compare(champion, challenger)."""
    missing = [g for g in guards if g not in comparisons]
    if missing:
        raise PairingError(f"guard benchmark(s) {missing} were not evaluated (have {sorted(comparisons)})")
    primary = [name for name in comparisons if name not in guards]
    if not primary:
        raise PairingError(f"no benchmark to gate on: all of {sorted(comparisons)} are guards")
    lines, ok = [], True
    for name in primary:
        c = comparisons[name]
        clears = c.gain.low > min_gain
        ok &= clears
        lines.append(f"{name}: gain {_describe(c)} {'clears' if clears else 'does not clear'} "
                     f"min_gain {min_gain:+.3f}")
    for name in guards:
        c = comparisons[name]
        holds = c.gain.value >= -max_regression
        ok &= holds
        lines.append(f"{name} (guard): gain {_describe(c)} {'within' if holds else 'drops by more than'} "
                     f"max_regression {max_regression:.3f}")
    verdict = "promote" if ok else "reject"
    return GateDecision(promote=ok, reason=f"{verdict}: " + "; ".join(lines))


def _describe(c: PairedComparison) -> str:
    p = "" if c.mcnemar_p is None else f", McNemar p={c.mcnemar_p:.3g}"
    return (f"{c.gain.value:+.3f} [{c.gain.low:+.3f}, {c.gain.high:+.3f}] (pass@1 {c.a_pass1.value:.3f} -> "
            f"{c.b_pass1.value:.3f}, {c.gained} gained / {c.lost} lost of {c.problems}{p})")
