"""Rule-check equivalence on real MATH-500 gold answers (tests/verify/data/math500.jsonl).

Every gold answer against rewritings that must be ``correct`` (decimals, \\dfrac, a/b,
spacing, \\left(, degrees, text wrappers) and perturbations that must not be (a changed
digit, a flipped sign, the reciprocal, another option). The full set also prints the
precision and recall quoted in the closing note.
"""

import pytest

from oreal_core.config import VerifierConfig
from oreal_core.types import FinishReason, Outcome
from oreal_core.verify.verifier import Verifier, VerifyItem
from tests.verify.math500_variants import gold_answers, variants


def _grade(rule_pool, cases):
    items = [VerifyItem(f"Therefore the answer is \\boxed{{{variant}}}.<|im_end|>", FinishReason.STOP, gold)
             for gold, variant, _, _ in cases]
    with Verifier(VerifierConfig(rule_timeout_s=10.0), pool=rule_pool) as verifier:
        return verifier.verify(items)


def _score(cases, verdicts):
    tp = sum(eq and v.outcome is Outcome.CORRECT for (_, _, _, eq), v in zip(cases, verdicts, strict=True))
    fp = sum(not eq and v.outcome is Outcome.CORRECT for (_, _, _, eq), v in zip(cases, verdicts, strict=True))
    positives = sum(eq for *_, eq in cases)
    misses = [(name, gold, variant, v.outcome.value, v.reason)
              for (gold, variant, name, eq), v in zip(cases, verdicts, strict=True)
              if (v.outcome is Outcome.CORRECT) != eq]
    return tp / max(tp + fp, 1), tp / max(positives, 1), misses


def test_math500_sample_rewritings_and_perturbations(rule_pool):
    cases = variants(gold_answers()[::10])
    assert len(cases) > 150
    precision, recall, misses = _score(cases, _grade(rule_pool, cases))
    assert not misses, misses


@pytest.mark.slow
def test_math500_all_gold_answers_precision_recall(rule_pool):
    cases = variants(gold_answers())
    verdicts = _grade(rule_pool, cases)
    precision, recall, misses = _score(cases, verdicts)
    negatives = [v for (*_, eq), v in zip(cases, verdicts, strict=True) if not eq]
    print(f"\nMATH-500 rule check: {len(cases)} pairs, precision {precision:.4f}, recall {recall:.4f}, "
          f"perturbations incorrect {sum(v.outcome is Outcome.INCORRECT for v in negatives)}/{len(negatives)}")
    assert not misses, misses
    assert precision == 1.0 and recall == 1.0
