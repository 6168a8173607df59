import math

import pytest

from oreal_core.algo.schedule import actor_frozen, actor_schedule_step, warmup_cosine

PAPER = dict(lr=5e-7, min_lr=1e-7, warmup_steps=10, total_steps=90)


def test_warmup_is_linear_to_peak():
    assert warmup_cosine(0, **PAPER) == pytest.approx(5e-8)
    assert warmup_cosine(9, **PAPER) == pytest.approx(5e-7)


def test_cosine_from_peak_to_min():
    assert warmup_cosine(10, **PAPER) == pytest.approx(5e-7)
    assert warmup_cosine(50, **PAPER) == pytest.approx(1e-7 + 4e-7 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(90, **PAPER) == pytest.approx(1e-7)
    assert warmup_cosine(500, **PAPER) == pytest.approx(1e-7)


def test_no_warmup():
    assert warmup_cosine(0, lr=1.0, min_lr=0.0, warmup_steps=0, total_steps=10) == 1.0


def test_freeze_and_reference_quirk():
    assert [actor_frozen(s, 10) for s in (0, 9, 10)] == [True, True, False]
    # reference: the schedule advanced during the freeze, so step 10 sees schedule step 10 (peak)
    assert actor_schedule_step(10, 10, advances_while_frozen=True) == 10
    assert actor_schedule_step(10, 10, advances_while_frozen=False) == 0


def test_bad_step():
    with pytest.raises(ValueError, match="step: must be >= 0"):
        warmup_cosine(-1, **PAPER)
