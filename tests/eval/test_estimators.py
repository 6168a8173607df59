import math

import pytest

from oreal_core.eval import mean_with_bootstrap, pass_at_k


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 is the fraction correct
        (16, 0, 8, 0.0),  # c = 0
        (4, 1, 4, 1.0),  # n = k: any correct sample means pass
        (4, 0, 4, 0.0),
        (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 1 - 3/10 = 0.7
        (16, 4, 8, 1 - math.comb(12, 8) / math.comb(16, 8)),
        (3, 2, 2, 1.0),  # n - c < k
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_stays_exact_where_binomials_overflow():
    n, c, k = 2000, 7, 100
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize(
    "n, c, k, message",
    [(0, 0, 1, "n: need at least one"), (4, 5, 1, "c: must be in"), (4, 1, 5, "k: must be in"),
     (4, 1, 0, "k: must be in"), (4.0, 1, 1, "n: expected an integer"), (4, -1, 1, "c: must be in")],
)
def test_pass_at_k_bad_input(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data():
    small = mean_with_bootstrap([1, 0, 1, 0] * 5, seed=1)
    large = mean_with_bootstrap([1, 0, 1, 0] * 500, seed=1)
    assert small.value == large.value == 0.5
    assert small.low < 0.5 < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert mean_with_bootstrap([1, 0, 1], seed=3) == mean_with_bootstrap([1, 0, 1], seed=3)


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="per_problem: need a non-empty"):
        mean_with_bootstrap([])
    with pytest.raises(ValueError, match="per_problem: contains NaN"):
        mean_with_bootstrap([0.5, float("nan")])
