"""The small frozen records that stages hand each other.

Large per-token data travels between stages as Parquet artefacts in the lake, not through
these objects; they carry one prompt, one sample or one verdict, or a reference to an
artefact, so a Prefect task can return them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class Prompt:
    """One RL or evaluation problem, already rendered through the chat template."""

    prompt_id: str
    question: str
    gold_answer: str
    text: str  # the chat-templated prompt the policy sees
    pass_rate: float | None = None
    source: str = ""  # file or generator it came from, for provenance
    metadata: tuple[tuple[str, str], ...] = ()  # e.g. (("subject", "Algebra"), ("level", "3"))


class FinishReason(StrEnum):
    STOP = "stop"  # ended with the stop word
    LENGTH = "length"  # hit max_new_tokens or the context


@dataclass(frozen=True)
class Sample:
    """One sampled response to a prompt, with what training needs to recompute it."""

    prompt_id: str
    sample_idx: int
    response: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # response tokens, including the generated stop token
    logprobs: tuple[float, ...]  # the rollout engine's log-prob of each response token
    finish_reason: FinishReason
    policy_version: int = 0  # the training step whose weights produced it


class Outcome(StrEnum):
    """Why a sample got its reward. Nothing is ever silently scored 0."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    TRUNCATED = "truncated"  # did not end with the stop word: incorrect, judge not called
    UNPARSEABLE = "unparseable"  # no answer could be extracted, or the check timed out
    JUDGE_ERROR = "judge_error"  # the judge could not give a verdict


class VerdictSource(StrEnum):
    RULE = "rule"
    JUDGE = "judge"


@dataclass(frozen=True)
class Verdict:
    """The verifier's decision on one sample, explainable afterwards."""

    outcome: Outcome
    reward: float | None  # None: not graded (judge_error); such a sample never enters training
    source: VerdictSource
    extracted_answer: str | None = None
    reason: str = ""
    judge_reply: str | None = None
    rule_outcome: Outcome | None = None  # kept when the judge overrode or confirmed the rule
    judge_failed: bool = False  # the judge was asked and gave no verdict (judge_error, or a rule fallback)

    @property
    def correct(self) -> bool:
        return self.outcome is Outcome.CORRECT

    @property
    def rule_judge_disagree(self) -> bool:
        """The judge decided and its verdict contradicts a definite rule verdict (audit trail)."""
        decided = (Outcome.CORRECT, Outcome.INCORRECT)
        return (self.source is VerdictSource.JUDGE and self.rule_outcome in decided
                and self.outcome in decided and self.outcome is not self.rule_outcome)


@dataclass(frozen=True)
class ScoredSample:
    """A kept sample ready for the train stage: tokens, advantage and polarity."""

    prompt_id: str
    sample_idx: int
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    advantage: float
    is_positive: bool
    # The rollout engine's log-prob of each response token (empty: not known, e.g. a batch
    # read from scored.parquet): the trainer compares its own log-probs with them (health).
    rollout_logprobs: tuple[float, ...] = ()


@dataclass(frozen=True)
class ScoredBatch:
    """The kept samples of one step (Algorithm 1, line 5), in a fixed order."""

    step: int
    samples: tuple[ScoredSample, ...]

    @property
    def num_response_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.samples)


@dataclass(frozen=True)
class ArtefactRef:
    """A committed stage artefact in the lake; what Prefect tasks pass along."""

    run_id: str
    step: int
    stage: str
    uri: str
    rows: int
    checksum: str = ""


@dataclass(frozen=True)
class StepMetrics:
    """Scalar metrics of one RL iteration (one row of the `metrics` table)."""

    step: int
    values: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, step: int, values: dict[str, float]) -> StepMetrics:
        return cls(step=step, values=tuple(sorted((k, float(v)) for k, v in values.items())))

    def as_dict(self) -> dict[str, float]:
        return dict(self.values)
