"""Per-response signatures of degenerate or reward-hacking output (docs/health.md).

Pure functions of one response (its text or token ids): the run-health metrics of a step
(:mod:`oreal_core.pipeline.health`) average them, and the lake registers them as SQL
scalars (:mod:`oreal_core.store.views`) so ``oreal samples`` finds the responses behind a
signature with the same definition.
"""

from __future__ import annotations

from oreal_core.verify.extract import boxed_answers, normalise_answer

REPEAT_NGRAM = 8  # token n-gram length of the repetition signature: rare in real working, the unit of a loop
REPETITIVE_RATIO = 0.5  # a response whose repeated-n-gram ratio exceeds this counts as repetitive
MIN_WORK_CHARS = 12  # fewer non-blank characters before the first \boxed: "an answer with no working"


def repeated_ngram_ratio(tokens: list[int] | tuple[int, ...], n: int = REPEAT_NGRAM) -> float:
    """1 - distinct/total over the response's token n-grams: 0 for text that never repeats an
    n-gram, -> 1 for a loop. A response shorter than n has no n-gram and scores 0."""
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    return 1.0 - len({tuple(tokens[i:i + n]) for i in range(total)}) / total


def distinct_boxed(response: str) -> int:
    """How many *different* \\boxed answers the response gives (after normalisation)."""
    return len({normalise_answer(a) for a in boxed_answers(response) if a})


def boxed_without_work(response: str, min_chars: int = MIN_WORK_CHARS) -> bool:
    """A \\boxed answer with (almost) nothing written before it."""
    first = response.find("\\boxed{")
    if first < 0:
        first = response.find("\\fbox{")
    return first >= 0 and sum(not c.isspace() for c in response[:first]) < min_chars
