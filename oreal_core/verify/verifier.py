"""The verify stage's batch entry: rule check, verdict cache, then the LLM judge.

Per sample (OREAL_SPEC.md §4):
1. no stop word at the end (or finish reason ``length``) -> ``truncated``, judge not called;
2. cut at the last thinking-finish marker, extract the answer, rule-check it (process pool,
   per-item timeout; each distinct (answer, gold) pair once per run);
3. if the rule does not confirm correctness (``judge_when``), ask the judge with the whole
   post-thinking text; its reply decides, and the rule's outcome is kept beside it so
   rule-vs-judge disagreement can be audited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from oreal_core.config import VerifierConfig
from oreal_core.types import FinishReason, Outcome, Prompt, Sample, Verdict, VerdictSource
from oreal_core.verify.cache import CacheKey, VerdictCache, cache_key
from oreal_core.verify.equivalence import RuleResult
from oreal_core.verify.extract import Extraction, extract_answer, summary_part
from oreal_core.verify.judge_client import JudgeRequest, JudgeResult, judge_batch
from oreal_core.verify.rule import new_pool, reward_for, rule_verdict, run_rule_checks
from oreal_core.verify.workers import TimeoutPool


class JudgeUnavailable(RuntimeError):
    """Samples got no judge verdict where a caller cannot use a judge_error outcome."""


@dataclass(frozen=True)
class VerifyItem:
    """One sample to verify: the decoded response with special tokens kept."""

    response: str
    finish_reason: FinishReason
    gold: str
    question: str = ""

    @classmethod
    def of(cls, sample: Sample, prompt: Prompt) -> VerifyItem:
        return cls(sample.response, sample.finish_reason, prompt.gold_answer, prompt.question)


@dataclass(frozen=True)
class _Prepared:
    item: VerifyItem
    truncation: str  # why the sample counts as truncated; "" if it finished
    summary: str
    extraction: Extraction

    @property
    def key(self) -> CacheKey | None:
        return cache_key(self.extraction.answer, self.item.gold) if self.extraction.answer is not None else None


def _prepare(item: VerifyItem, cfg: VerifierConfig) -> _Prepared:
    if item.finish_reason is not FinishReason.STOP:
        truncation = f"finish reason {item.finish_reason.value}: no stop word, judge not called"
    elif not item.response.rstrip().endswith(cfg.stop_word):
        truncation = f"response does not end with the stop word {cfg.stop_word!r}, judge not called"
    else:
        truncation = ""
    summary = summary_part(item.response, cfg.stop_word, cfg.thinking_finish_words)
    return _Prepared(item, truncation, summary, extract_answer(summary))


class Verifier:
    """Holds the rule-check pool and the verdict cache for a run; ``with Verifier(cfg) as v:``."""

    def __init__(self, cfg: VerifierConfig, pool: TimeoutPool | None = None, seed: int | None = None) -> None:
        self.cfg = cfg
        self._own_pool = pool is None
        self.pool = pool or new_pool(cfg.rule_workers)
        self.cache = VerdictCache()
        self.seed = seed
        self.rule_checks = 0  # pairs actually sent to the pool (cache misses)
        self.judge_calls = 0  # requests actually sent to the judge

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, items: Sequence[VerifyItem]) -> list[Verdict]:
        prepared = [_prepare(item, self.cfg) for item in items]
        rule_results = self._rule_phase(prepared)
        rule_verdicts = [self._rule_or_truncated(p, r) for p, r in zip(prepared, rule_results, strict=True)]
        to_judge = [i for i, v in enumerate(rule_verdicts) if self._wants_judge(prepared[i], v)]
        judged = self._judge_phase([prepared[i] for i in to_judge])
        verdicts = list(rule_verdicts)
        for i, result in zip(to_judge, judged, strict=True):
            verdicts[i] = self._judge_verdict(rule_verdicts[i], result)
        return verdicts

    def _rule_phase(self, prepared: list[_Prepared]) -> list[tuple[RuleResult, bool] | None]:
        """(result, came_from_cache) per sample; None where nothing was extracted or truncated."""
        out: list[tuple[RuleResult, bool] | None] = [None] * len(prepared)
        todo: dict[CacheKey | int, list[int]] = {}
        for i, p in enumerate(prepared):
            if p.truncation or p.key is None:
                continue
            cached = self.cache.get_rule(p.key) if self.cfg.cache else None
            if cached is not None:
                out[i] = (cached, True)
            else:  # without the cache every sample is its own job
                todo.setdefault(p.key if self.cfg.cache else i, []).append(i)
        jobs = list(todo.items())
        pairs = [(prepared[idx[0]].extraction.answer, prepared[idx[0]].item.gold) for _, idx in jobs]
        self.rule_checks += len(pairs)
        for (key, indices), result in zip(jobs, run_rule_checks(self.pool, pairs, self.cfg.rule_timeout_s),
                                          strict=True):
            if self.cfg.cache:
                self.cache.put_rule(key, result)
            for rank, i in enumerate(indices):
                out[i] = (result, rank > 0)  # repeats within the batch are cache hits too
        return out

    def _rule_or_truncated(self, p: _Prepared, rule: tuple[RuleResult, bool] | None) -> Verdict:
        if p.truncation:
            return Verdict(Outcome.TRUNCATED, reward_for(Outcome.TRUNCATED, self.cfg), VerdictSource.RULE,
                           p.extraction.answer, p.truncation)
        result, cached = rule if rule is not None else (None, False)
        return rule_verdict(p.extraction, result, self.cfg, cached)

    def _wants_judge(self, p: _Prepared, verdict: Verdict) -> bool:
        when = self.cfg.judge_when
        if not self.cfg.judge.enabled or when == "never" or verdict.outcome is Outcome.TRUNCATED:
            return False
        return when == "always" or verdict.outcome is not Outcome.CORRECT

    def _judge_phase(self, prepared: list[_Prepared]) -> list[tuple[JudgeResult, bool]]:
        out: list[tuple[JudgeResult, bool] | None] = [None] * len(prepared)
        todo: dict[CacheKey | int, list[int]] = {}
        for i, p in enumerate(prepared):
            cached = self.cache.get_judge(p.key) if self.cfg.cache and p.key is not None else None
            if cached is not None:
                out[i] = (cached, True)
            else:  # no extracted answer: the judge reads the text, nothing to share
                todo.setdefault(p.key if self.cfg.cache and p.key is not None else i, []).append(i)
        jobs = list(todo.items())
        requests = [JudgeRequest(prepared[idx[0]].item.question, prepared[idx[0]].item.gold,
                                 prepared[idx[0]].summary) for _, idx in jobs]
        self.judge_calls += len(requests)
        results = judge_batch(self.cfg.judge, requests, seed=self.seed) if requests else []
        for (key, indices), result in zip(jobs, results, strict=True):
            if not isinstance(key, int):
                self.cache.put_judge(key, result)
            for rank, i in enumerate(indices):
                out[i] = (result, rank > 0)
        return out

    def _judge_verdict(self, rule: Verdict, judged: tuple[JudgeResult, bool]) -> Verdict:
        result, cached = judged
        rule_note = f"rule said {rule.outcome.value}: {rule.reason}"
        if result.correct is None and self.cfg.on_judge_error == "rule":
            return replace(rule, reason=f"judge error: {result.error}; graded by the rule alone "
                                        f"(verifier.on_judge_error=rule); {rule_note}", judge_reply=result.reply,
                           judge_failed=True)
        if result.correct is None:
            outcome, reason = Outcome.JUDGE_ERROR, f"judge error: {result.error}; {rule_note}"
        else:
            outcome = Outcome.CORRECT if result.correct else Outcome.INCORRECT
            reason = f"judge replied {'A' if result.correct else 'B'}; {rule_note}"
        return Verdict(outcome, reward_for(outcome, self.cfg), VerdictSource.JUDGE, rule.extracted_answer,
                       reason + ("; judge cached" if cached else ""), result.reply, rule.outcome,
                       judge_failed=result.correct is None)


def verify_batch(items: Sequence[VerifyItem], cfg: VerifierConfig) -> list[Verdict]:
    """One-shot convenience (own pool and cache); a run should keep one :class:`Verifier`."""
    with Verifier(cfg) as verifier:
        return verifier.verify(items)


def verdict_metrics(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Per-step counts for StepMetrics: outcomes, judge use, rule-vs-judge disagreement."""
    n = max(len(verdicts), 1)
    counts = Counter(v.outcome.value for v in verdicts)
    judged = [v for v in verdicts if v.source is VerdictSource.JUDGE]
    rewards = [v.reward for v in verdicts if v.reward is not None]
    metrics = {f"verify/{o.value}_frac": counts.get(o.value, 0) / n for o in Outcome}
    metrics["verify/judged"] = float(len(judged))
    metrics["verify/judge_error_rate"] = judge_error_rate(verdicts)
    metrics["verify/rule_judge_disagree"] = float(sum(v.rule_judge_disagree for v in verdicts))
    metrics["verify/mean_reward"] = sum(rewards) / max(len(rewards), 1)  # over the graded samples
    return metrics


def judge_error_rate(verdicts: Sequence[Verdict]) -> float:
    """Share of the samples sent to the judge that got no verdict (rule fallbacks included)."""
    asked = sum(v.source is VerdictSource.JUDGE or v.judge_failed for v in verdicts)
    return sum(v.judge_failed for v in verdicts) / asked if asked else 0.0


def check_judge_error_rate(verdicts: Sequence[Verdict], cfg: VerifierConfig, where: str) -> None:
    """Refuse a batch whose judge error rate exceeds ``verifier.max_judge_error_frac``."""
    rate = judge_error_rate(verdicts)
    if rate > cfg.max_judge_error_frac:
        first = next(v.reason for v in verdicts if v.judge_failed)
        raise JudgeUnavailable(
            f"{where}: {rate:.0%} of the samples sent to the judge got no verdict (limit "
            f"verifier.max_judge_error_frac={cfg.max_judge_error_frac:g}); nothing was committed or trained. "
            f"Check verifier.judge.hosts={list(cfg.judge.hosts)}; first error: {first}")
