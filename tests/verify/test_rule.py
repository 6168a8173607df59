"""rule.check: real math-verify in real worker processes, bad input, threads, timeouts."""

import threading
import time

import pytest

from oreal_core.config import VerifierConfig
from oreal_core.types import Outcome, VerdictSource
from oreal_core.verify.rule import check, run_rule_checks

CFG = VerifierConfig(rule_timeout_s=3.0)
STOP = "<|im_end|>"


@pytest.mark.parametrize(("response", "gold", "outcome"), [
    (f"<think>maybe \\boxed{{3}}</think>So \\boxed{{\\dfrac{{14}}{{3}}}}{STOP}", "\\frac{14}{3}", Outcome.CORRECT),
    (f"**Final Answer** \\boxed{{0.5}}{STOP}", "\\frac{1}{2}", Outcome.CORRECT),
    ("\\boxed{4.6667}", "\\frac{14}{3}", Outcome.CORRECT),  # reference: relative tolerance 1e-4
    ("\\boxed{4.7}", "\\frac{14}{3}", Outcome.INCORRECT),
    ("\\boxed{q - p}", "p - q", Outcome.INCORRECT),
    ("The answer is 9", "9", Outcome.CORRECT),
])
def test_check_outcomes(rule_pool, response, gold, outcome):
    verdict = check(response, gold, CFG, pool=rule_pool)
    assert verdict.outcome is outcome and verdict.source is VerdictSource.RULE
    assert verdict.reward == (1.0 if outcome is Outcome.CORRECT else -1.0)
    assert verdict.reason and verdict.rule_outcome is outcome


BAD_INPUTS = {
    "empty": ("", "5", "no answer extracted: empty response"),
    "no_boxed": ("I could not solve it.", "5", "no answer extracted"),
    "unbalanced": ("\\boxed{\\frac{1}{2", "\\frac12", "answer from last_number (1 unbalanced \\boxed)"),
    "huge": ("lorem " * 20_000 + "\\boxed{" + "(" * 30_000 + "}", "5", None),
    "unicode": ("答案: \\boxed{√2 ≈ 1.41 ∞}", "\\sqrt{2}", None),
    "bad_gold": ("\\boxed{5}", "\\frac{", "gold answer does not parse"),
    "empty_gold": ("\\boxed{5}", "", "gold answer does not parse"),
    "bad_answer": ("\\boxed{\\frac{}", "5", None),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_a_recorded_outcome(rule_pool, name):
    response, gold, reason = BAD_INPUTS[name]
    start = time.monotonic()
    verdict = check(response, gold, CFG, pool=rule_pool)
    assert time.monotonic() - start < CFG.rule_timeout_s + 5
    assert verdict.outcome in (Outcome.INCORRECT, Outcome.UNPARSEABLE), verdict
    assert verdict.reward == CFG.reward_incorrect and verdict.reason
    if reason:
        assert reason in verdict.reason


def test_sympy_explosion_times_out_and_pool_recovers(rule_pool):
    cfg = VerifierConfig(rule_timeout_s=1.0)
    start = time.monotonic()
    verdict = check("\\boxed{9^{9^{9^{9^{9}}}}}", "5", cfg, pool=rule_pool)
    assert time.monotonic() - start < 1.0 + 3.0
    assert verdict.outcome is Outcome.UNPARSEABLE and "timed out after 1s" in verdict.reason
    assert check("\\boxed{5}", "5", cfg, pool=rule_pool).outcome is Outcome.CORRECT  # replaced worker works


def test_works_from_non_main_threads(rule_pool):
    # math-verify's own signal.alarm timeouts raise off the main thread (Prefect .submit()).
    verdicts = []
    threads = [threading.Thread(target=lambda: verdicts.append(check("\\boxed{1/2}", "0.5", CFG, pool=rule_pool)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [v.outcome for v in verdicts] == [Outcome.CORRECT] * 4


def test_one_bad_item_does_not_sink_the_batch(rule_pool):
    pairs = [("5", "5"), ("9^{9^{9^{9^{9}}}}", "1"), ("\\frac{1}{3}", "1/3"), ("2", "3")]
    results = run_rule_checks(rule_pool, pairs, timeout_s=1.0)
    assert [r.outcome for r in results] == [Outcome.CORRECT, Outcome.UNPARSEABLE, Outcome.CORRECT,
                                            Outcome.INCORRECT]


def test_check_without_explicit_pool_uses_shared_pool():
    assert check("\\boxed{2}", "2", VerifierConfig(rule_workers=1)).outcome is Outcome.CORRECT


def test_worker_that_cannot_start_is_a_clear_error():
    from oreal_core.verify.workers import TimeoutPool

    with pytest.raises(RuntimeError, match="worker exited with code 1 while starting"):
        TimeoutPool(1, preload=("oreal_core.no_such_module",))
