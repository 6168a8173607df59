"""The gate's statistics against hand computations on small tables."""

from __future__ import annotations

import math

import pytest

from oreal_core.config import ConfigError, load_config
from oreal_core.eval.paired import PairingError, compare, decide, mcnemar_exact

# 10 problems: both right on p0-p3, both wrong on p4, b gains p5-p7, b loses p8-p9
CHAMPION = {f"p{i}": float(i < 4 or i >= 8) for i in range(10)}
CHALLENGER = {f"p{i}": float(i < 4 or 5 <= i < 8) for i in range(10)}


def test_mcnemar_exact_by_hand():
    # 3 gained, 2 lost: n = 5 discordant pairs, P(X <= 2) = (C(5,0) + C(5,1) + C(5,2)) / 2^5 = 16/32
    assert mcnemar_exact(3, 2) == pytest.approx(min(1.0, 2 * 16 / 32))
    # 8 gained, 1 lost: 2 * (C(9,0) + C(9,1)) / 2^9 = 20/512
    assert mcnemar_exact(8, 1) == pytest.approx(2 * (math.comb(9, 0) + math.comb(9, 1)) / 2**9)
    assert mcnemar_exact(1, 8) == mcnemar_exact(8, 1)  # two-sided
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 2**6)


def test_compare_on_a_ten_problem_table():
    c = compare(CHAMPION, CHALLENGER)
    assert c.problems == 10 and (c.gained, c.lost) == (3, 2)
    assert c.a_pass1.value == pytest.approx(0.6) and c.b_pass1.value == pytest.approx(0.7)
    assert c.gain.value == pytest.approx(0.1)
    assert c.mcnemar_p == pytest.approx(1.0)  # 2 * 16/32
    # normal approximation by hand: differences are 3 x +1, 2 x -1, 5 x 0
    mean = 0.1
    sd = math.sqrt((3 * (1 - mean) ** 2 + 2 * (-1 - mean) ** 2 + 5 * mean**2) / 9)
    half = 1.959963984540054 * sd / math.sqrt(10)
    assert (c.gain_normal.low, c.gain_normal.high) == pytest.approx((mean - half, mean + half))
    assert c.gain.low < 0.1 < c.gain.high
    assert compare(CHAMPION, CHALLENGER) == c  # fixed seed: the same records give the same interval


def test_fractional_scores_have_no_mcnemar():
    c = compare({"a": 0.5, "b": 1.0}, {"a": 0.75, "b": 1.0})
    assert c.mcnemar_p is None and (c.gained, c.lost) == (1, 0)


def test_mismatched_problem_sets_are_refused():
    with pytest.raises(PairingError, match="different problems: 1 only in a \\(p9\\), 1 only in b \\(q9\\)"):
        compare(CHAMPION, {**{k: v for k, v in CHALLENGER.items() if k != "p9"}, "q9": 1.0})
    with pytest.raises(PairingError, match="need scores"):
        compare({}, CHALLENGER)
    with pytest.raises(PairingError, match=r"\[0, 1\]"):
        compare({"a": 2.0}, {"a": 1.0})


def test_decide_promotes_a_clear_gain_and_rejects_a_noisy_one():
    better = {f"p{i}": 1.0 for i in range(40)}
    worse = {f"p{i}": float(i < 10) for i in range(40)}
    clear = decide({"synthetic": compare(worse, better)})
    assert clear.promote and clear.reason.startswith("promote: synthetic: gain +0.750")
    noisy = decide({"synthetic": compare(CHAMPION, CHALLENGER)})
    assert not noisy.promote and "does not clear min_gain +0.000" in noisy.reason
    assert not decide({"synthetic": compare(worse, better)}, min_gain=0.9).promote


def test_decide_guard_regression_rejects():
    better = {f"p{i}": 1.0 for i in range(40)}
    worse = {f"p{i}": float(i < 10) for i in range(40)}
    guard_drop = compare({f"g{i}": 1.0 for i in range(10)}, {f"g{i}": float(i > 0) for i in range(10)})  # -0.1
    gate = {"synthetic": compare(worse, better), "gsm8k": guard_drop}
    rejected = decide(gate, guards=["gsm8k"], max_regression=0.05)
    assert not rejected.promote and "gsm8k (guard): gain -0.100" in rejected.reason
    assert "drops by more than max_regression 0.050" in rejected.reason
    assert decide(gate, guards=["gsm8k"], max_regression=0.1).promote
    with pytest.raises(PairingError, match="not evaluated"):
        decide({"synthetic": gate["synthetic"]}, guards=["gsm8k"])


def test_retrain_config_is_checked_and_left_out_of_the_hash():
    base = load_config(None, [])
    tuned = load_config(None, ["retrain.min_gain=0.05", "retrain.reference=base"])
    assert tuned.retrain.min_gain == 0.05 and base.retrain.reference == "start"
    assert tuned.hash() == base.hash()  # the gate changes no training result
    with pytest.raises(ConfigError, match="retrain.guard_benchmarks"):
        load_config(None, ["retrain.guard_benchmarks=[gsm8k]"])
    with pytest.raises(ConfigError, match="max_regression"):
        load_config(None, ["retrain.max_regression=2"])
