"""summarise_bench (pure) and the command's rendering."""

from __future__ import annotations

import pytest

from oreal_core.eval.command import default_run_id, render_summary
from oreal_core.eval.estimators import pass_at_k
from oreal_core.eval.metrics import summarise_bench
from oreal_core.eval.runner import EvalSummary, checkpoint_step
from oreal_core.store.layout import check_run_id
from oreal_core.store.records import EvalRecord


def _rec(problem: str, sample: int, outcome: str, tokens: int = 10) -> EvalRecord:
    return EvalRecord("ck", "b", problem, sample, "r", tokens, "length" if outcome == "truncated" else "stop",
                      outcome, None, float(outcome == "correct"))


OUTCOMES = {"a": ["correct", "incorrect", "incorrect", "incorrect"],
            "b": ["truncated", "truncated", "incorrect", "unparseable"],
            "c": ["correct", "correct", "correct", "incorrect"]}
METADATA = {"a": (("level", "10"),), "b": (("level", "2"), ("subject", "Algebra")), "c": (("level", "2"),)}


def _summary(k: int = 2, **kw):
    records = [_rec(p, i, o, tokens=5 * (i + 1)) for p, outs in OUTCOMES.items() for i, o in enumerate(outs)]
    return summarise_bench(records, bench="b", checkpoint="ck", step=3, k=k, metadata=METADATA,
                           breakdown_keys=("level", "subject"), **kw)


def test_pass_rates_lengths_truncation_and_breakdown():
    s = _summary(sampled_problems=3, sample_s=1.5)
    assert (s.problems, s.samples_per_problem, s.k) == (3, 4, 2)
    assert s.pass1.value == pytest.approx((1 / 4 + 0 + 3 / 4) / 3)
    assert s.pass_k.value == pytest.approx((pass_at_k(4, 1, 2) + 0 + pass_at_k(4, 3, 2)) / 3)
    assert s.mean_tokens == pytest.approx(12.5) and s.truncation_rate == pytest.approx(2 / 12)
    assert dict(s.outcomes) == {"correct": 4, "incorrect": 5, "truncated": 2, "unparseable": 1}
    assert [(g.key, g.value, g.problems, g.pass1) for g in s.breakdown] == [
        ("level", "2", 2, pytest.approx(3 / 8)), ("level", "10", 1, 0.25), ("subject", "Algebra", 1, 0.0)]
    assert s.problems_per_s == pytest.approx(2.0)


def test_summary_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="needs at least 5 samples"):
        _summary(k=5)
    with pytest.raises(ValueError, match="differing sample counts"):
        summarise_bench([_rec("a", 0, "correct"), _rec("a", 1, "correct"), _rec("b", 0, "correct")], bench="b",
                        checkpoint="", step=0, k=1, metadata={}, breakdown_keys=())
    with pytest.raises(ValueError, match="no records"):
        summarise_bench([], bench="b", checkpoint="", step=0, k=1, metadata={}, breakdown_keys=())


def test_checkpoint_names_give_steps_and_run_ids():
    assert checkpoint_step("runs/x/checkpoints/hf/step=000040") == 40
    assert checkpoint_step("/models/OREAL-7B") == 0 and checkpoint_step("ckpt/global_step-120") == 120
    run_id = default_run_id("runs/x/hf/step=000040")
    assert run_id == "eval-hf-step-000040" and check_run_id(run_id) == run_id
    assert check_run_id(default_run_id("/models/OREAL 7B (final)")) == "eval-models-OREAL-7B-final"


def test_render_summary_shows_intervals_and_groups():
    text = render_summary(EvalSummary("r", 3, "ck", (_summary(),)))
    assert "pass@1 [95% CI]" in text and f"{_summary().pass1.value:.3f} [" in text and "k=2:" in text
    assert "b by group: level=2: 0.375 (2)" in text and "run_id = 'r' AND step = 3" in text
