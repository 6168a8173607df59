"""The ``monitor`` section: health alarms on the per-step ``health/`` metrics (docs/health.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from oreal_core.config.checks import _check


@dataclass(frozen=True)
class AlarmConfig:
    """One health alarm: its action and its bounds. A key left out in YAML keeps this alarm's
    default (MonitorConfig): ``{above: 0.5}`` moves the bound and keeps the action; bounds
    replace the default bounds together (give ``above`` alone and there is no ``below``)."""

    action: Literal["none", "warn", "stop"] | None = None  # none: recorded only; null: the alarm's default
    above: float | None = None  # fires when the metric is > above
    below: float | None = None  # fires when the metric is < below
    after_step: int = 0  # steps before this one never fire (e.g. while the actor is frozen)

    def __post_init__(self) -> None:
        _check(self.above is None or self.below is None or self.below <= self.above, "below", self.below,
               f"must be <= above={self.above} (the alarm fires outside [below, above])")
        _check(self.after_step >= 0, "after_step", self.after_step, "must be >= 0")

    def over(self, default: AlarmConfig) -> AlarmConfig:
        """These settings with what they leave out taken from ``default``."""
        bounds = (self.above, self.below) if self.above is not None or self.below is not None else \
            (default.above, default.below)
        return AlarmConfig(self.action or default.action, *bounds, self.after_step or default.after_step)


def _alarm(action: str, above: float | None = None, below: float | None = None) -> AlarmConfig:
    return field(default_factory=lambda: AlarmConfig(action, above, below))


@dataclass(frozen=True)
class MonitorConfig:
    """Health alarms checked after every step, before the next rollout."""

    enabled: bool = True  # false: health metrics are still recorded, no alarm is evaluated
    # A run whose Prefect API has not answered for this long stops with one line (flows/stop.py);
    # what it committed stays, `oreal resume` continues once the API is back. 0: wait forever.
    prefect_api_timeout_s: float = 180.0
    # NaN/inf in any metric of the step, or a step the trainer refused for a non-finite loss
    nonfinite: AlarmConfig = _alarm("stop", above=0.0)
    # mean |log pi_trainer - log pi_engine| on the kept tokens: bf16 noise is ~0.01-0.03, fp32
    # ~1e-5; far above means the engine samples from other weights (a failed weight reload)
    logprob_mismatch: AlarmConfig = _alarm("stop", above=0.1)
    # standard deviation of exp(delta), the trainer/engine probability ratio (1 +- noise)
    logprob_ratio_spread: AlarmConfig = _alarm("warn", above=0.5)
    # share of the samples sent to the judge that got no verdict (an outage: every sample is
    # excluded or rule-graded); verifier.max_judge_error_frac already fails the verify stage
    judge_errors: AlarmConfig = _alarm("stop", above=0.25)
    # rule and judge contradict each other on this share of the judge's decisions
    rule_judge_disagreement: AlarmConfig = _alarm("warn", above=0.5)
    # mean policy entropy on the sampled tokens (nats): near 0, exploration is gone
    entropy_collapse: AlarmConfig = _alarm("warn", below=0.05)
    # share of responses that hit rollout.max_new_tokens
    length_blowup: AlarmConfig = _alarm("warn", above=0.3)
    # reward hacking: share of responses with several different \boxed answers
    multi_boxed: AlarmConfig = _alarm("warn", above=0.1)
    # reward hacking: share of responses whose \boxed answer has (almost) no working before it
    boxed_without_work: AlarmConfig = _alarm("warn", above=0.3)
    # degenerate text: share of responses most of whose token 8-grams are repeats
    repetition: AlarmConfig = _alarm("warn", above=0.1)
    # share of the correct responses that used the whole generation budget
    correct_at_length_limit: AlarmConfig = _alarm("warn", above=0.1)
    # share of prompts whose samples are all correct or all wrong: no advantage to learn from
    # (near-zero temperature makes a group's samples identical; a broken reward makes all correct)
    no_learning_signal: AlarmConfig = _alarm("warn", above=0.95)
    # share of prompts whose samples are all correct: the task got easy, or the reward pays for
    # wrong answers (the SFT policy always shows working, so a hacked checker shows here first)
    all_correct: AlarmConfig = _alarm("warn", above=0.8)
    # actor gradient norm before clipping (optim.grad_clip): a spike precedes divergence
    grad_norm: AlarmConfig = _alarm("warn", above=100.0)

    def __post_init__(self) -> None:
        _check(self.prefect_api_timeout_s >= 0, "prefect_api_timeout_s", self.prefect_api_timeout_s,
               "must be >= 0 (0 = wait forever)")
        for f in fields(self):
            if f.type in (AlarmConfig, "AlarmConfig"):
                alarm = getattr(self, f.name).over(f.default_factory())
                _check(alarm.action == "none" or alarm.above is not None or alarm.below is not None,
                       f"{f.name}.action", alarm.action, "needs a bound: set above or below (or action: none)")
                object.__setattr__(self, f.name, alarm)

    def alarms(self) -> dict[str, AlarmConfig]:
        """Alarm name -> its settings, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), AlarmConfig)}
