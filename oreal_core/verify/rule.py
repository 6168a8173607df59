"""The rule check: extract the answer, decide equivalence with math-verify, with a hard timeout.

``check`` is the public single-sample entry; the verify stage batches through
:class:`oreal_core.verify.verifier.Verifier`, which shares the same pieces.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence

from oreal_core.config import VerifierConfig
from oreal_core.types import Outcome, Verdict, VerdictSource
from oreal_core.verify.equivalence import RuleResult, rule_equivalent, warm_up
from oreal_core.verify.extract import Extraction, extract_answer, summary_part
from oreal_core.verify.workers import Failed, TimedOut, TimeoutPool

_PRELOAD = ("oreal_core.verify.equivalence", "math_verify")
_shared_pools: dict[int, TimeoutPool] = {}
_shared_lock = threading.Lock()


def new_pool(workers: int) -> TimeoutPool:
    """Worker processes with sympy and math-verify imported and warmed up (~1 s, once per run)."""
    pool = TimeoutPool(workers, preload=_PRELOAD)
    pool.map(warm_up, [()] * workers, timeout_s=120.0)  # idle workers each take one item
    return pool


def shared_pool(workers: int) -> TimeoutPool:
    """One pool per size per process, started on first use and closed at exit."""
    with _shared_lock:
        if workers not in _shared_pools:
            _shared_pools[workers] = new_pool(workers)
        return _shared_pools[workers]


@atexit.register
def close_shared_pools() -> None:
    for pool in _shared_pools.values():
        pool.close()
    _shared_pools.clear()


def run_rule_checks(pool: TimeoutPool, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[RuleResult]:
    """``rule_equivalent`` over (answer, gold) pairs; a timeout or crash is an UNPARSEABLE result."""
    results = []
    for raw in pool.map(rule_equivalent, list(pairs), timeout_s):
        if isinstance(raw, TimedOut):
            results.append(RuleResult(Outcome.UNPARSEABLE, f"rule check timed out after {raw.seconds:g}s"))
        elif isinstance(raw, Failed):
            results.append(RuleResult(Outcome.UNPARSEABLE, f"rule check failed: {raw.error}"))
        else:
            results.append(raw)
    return results


def reward_for(outcome: Outcome, cfg: VerifierConfig) -> float | None:
    """+1 correct, -1 every other graded outcome; None for a sample nobody could grade.

    The reference scores a judge error -1; a judge outage would then train as wrong answers.
    """
    if outcome is Outcome.CORRECT:
        return cfg.reward_correct
    if outcome is Outcome.JUDGE_ERROR:
        return None
    return cfg.reward_incorrect


def describe_extraction(extraction: Extraction) -> str:
    text = f"answer from {extraction.method}"
    return f"{text} ({extraction.detail})" if extraction.detail else text


def rule_verdict(extraction: Extraction, result: RuleResult | None, cfg: VerifierConfig,
                 cached: bool = False) -> Verdict:
    """The verdict of the rule check alone (``result`` is None when nothing was extracted)."""
    if extraction.answer is None or result is None:
        return Verdict(Outcome.UNPARSEABLE, reward_for(Outcome.UNPARSEABLE, cfg), VerdictSource.RULE,
                       None, f"no answer extracted: {extraction.detail}", rule_outcome=Outcome.UNPARSEABLE)
    reason = f"{result.reason}; {describe_extraction(extraction)}" + ("; cached" if cached else "")
    return Verdict(result.outcome, reward_for(result.outcome, cfg), VerdictSource.RULE,
                   extraction.answer, reason, rule_outcome=result.outcome)


def check(response: str, gold: str, cfg: VerifierConfig, pool: TimeoutPool | None = None) -> Verdict:
    """Rule-check one response against its gold answer.

    The response is cut at the last thinking-finish marker and its stop word removed; a
    missing stop word is *not* judged here (the batch entry decides truncation from the
    finish reason). Never raises and never hangs for longer than ``cfg.rule_timeout_s``
    plus process overhead: bad input becomes an ``unparseable`` verdict with its reason.
    """
    extraction = extract_answer(summary_part(response, cfg.stop_word, cfg.thinking_finish_words))
    if extraction.answer is None:
        return rule_verdict(extraction, None, cfg)
    pool = pool or shared_pool(cfg.rule_workers)
    [result] = run_rule_checks(pool, [(extraction.answer, gold)], cfg.rule_timeout_s)
    return rule_verdict(extraction, result, cfg)
