"""Answer equivalence with math-verify (OREAL_SPEC.md §4, ``math_equal``).

This module runs inside the rule-check worker processes. math-verify's own timeouts use
``signal.alarm``, which only works on the main thread (a Prefect ``.submit()`` task is not
on it), so both are disabled here and the per-item timeout is enforced by killing the
worker process instead (see :mod:`oreal_core.verify.workers`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from oreal_core.types import Outcome
from oreal_core.verify.extract import normalise_answer

# The reference's math_equal accepts numbers within a relative tolerance of 1e-4
# (e.g. 4.6667 for 14/3); math-verify alone rounds to 6 decimals and would reject it.
NUMERIC_REL_TOL = 1e-4
_MAX_REASON = 160


@dataclass(frozen=True)
class RuleResult:
    """What the rule check concluded about one (answer, gold) pair."""

    outcome: Outcome  # CORRECT, INCORRECT or UNPARSEABLE
    reason: str


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."


@functools.lru_cache(maxsize=8192)
def _parse(latex: str) -> tuple:
    """Memoised per worker: the 16 samples of a prompt share one gold, and answers repeat."""
    from math_verify import parse

    return tuple(parse(latex, parsing_timeout=None))


def _has_math(parsed: tuple) -> bool:
    """math-verify falls back to the raw string when LaTeX does not parse; that is not math."""
    return any(not isinstance(item, str) for item in parsed)


def _numerically_close(gold: tuple, answer: tuple) -> bool:
    for g in gold[:1]:
        for a in answer[:1]:
            try:
                if not (getattr(g, "is_number", False) and getattr(a, "is_number", False)):
                    continue
                gv, av = complex(g.evalf()), complex(a.evalf())
            except (TypeError, ValueError, ArithmeticError):
                continue
            if gv.imag == 0 and av.imag == 0 and abs(av.real - gv.real) <= NUMERIC_REL_TOL * max(abs(gv.real), 1e-12):
                return True
    return False


def rule_equivalent(answer: str, gold: str) -> RuleResult:
    """Decide whether ``answer`` (extracted from a response) equals ``gold``.

    Never raises for bad input: an unparseable side is an ``UNPARSEABLE`` result naming it.
    """
    from math_verify import verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if normalise_answer(answer) == normalise_answer(gold):
        return RuleResult(Outcome.CORRECT, "answer equals gold after normalisation")
    parsed_gold = _parse(f"${gold}$") or _parse(gold)
    if not _has_math(parsed_gold):
        return RuleResult(Outcome.UNPARSEABLE, f"gold answer does not parse: {_short(gold)!r}")
    parsed_answer = _parse(f"\\boxed{{{answer}}}")
    if not _has_math(parsed_answer):
        return RuleResult(Outcome.UNPARSEABLE, f"extracted answer does not parse: {_short(answer)!r}")
    if verify(list(parsed_gold), list(parsed_answer), timeout_seconds=None):
        return RuleResult(Outcome.CORRECT, "math-verify: equivalent")
    if _numerically_close(parsed_gold, parsed_answer):
        return RuleResult(Outcome.CORRECT, f"numerically equal within relative {NUMERIC_REL_TOL:g}")
    return RuleResult(Outcome.INCORRECT,
                      f"math-verify: not equivalent (answer {_short(parsed_answer[0])}, "
                      f"gold {_short(parsed_gold[0])})")


# One pair per kind of expression the checker meets: the first of each kind pays sympy's
# lazy imports and caches (~0.3 s), so a worker warms up before its first real step.
_WARM_UP_PAIRS = (("\\frac{1}{2}+x", "x+0.5"), ("3\\sqrt{2}", "4\\sqrt{2}"), ("(1,2)", "(1,3)"),
                  ("[0,\\infty)", "(0,\\infty)"), ("y=2x+1", "y=2x"), ("\\text{(B)}", "B"), ("2+3i", "2-3i"))


def warm_up() -> int:
    """Run the warm-up pairs; returns how many ran (so the pool has a value to send back)."""
    return sum(1 for answer, gold in _WARM_UP_PAIRS if rule_equivalent(answer, gold))
