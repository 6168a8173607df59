"""Verdict cache keyed by (normalised extracted answer, normalised gold).

With 16 samples per prompt most answers repeat; a pair that was rule-checked or judged once
in a run is never recomputed or re-judged (the rule check costs ~ms of sympy, a judge call
~a second of a 72B model).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from oreal_core.verify.extract import normalise_answer

if TYPE_CHECKING:
    from oreal_core.verify.equivalence import RuleResult
    from oreal_core.verify.judge_client import JudgeResult

CacheKey = tuple[str, str]


def cache_key(answer: str, gold: str) -> CacheKey:
    return normalise_answer(answer), normalise_answer(gold)


class VerdictCache:
    """Thread-safe; one instance lives as long as a run (or a Verifier)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rule: dict[CacheKey, RuleResult] = {}
        self._judge: dict[CacheKey, JudgeResult] = {}
        self.hits = 0
        self.misses = 0

    def get_rule(self, key: CacheKey) -> RuleResult | None:
        return self._get(self._rule, key)

    def get_judge(self, key: CacheKey) -> JudgeResult | None:
        return self._get(self._judge, key)

    def put_rule(self, key: CacheKey, result: RuleResult) -> None:
        with self._lock:
            self._rule[key] = result

    def put_judge(self, key: CacheKey, result: JudgeResult) -> None:
        # A failed call is not cached: the next step may reach a recovered judge.
        if result.correct is not None:
            with self._lock:
                self._judge[key] = result

    def _get(self, table: dict, key: CacheKey):
        with self._lock:
            value = table.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def __len__(self) -> int:
        return len(self._rule) + len(self._judge)
