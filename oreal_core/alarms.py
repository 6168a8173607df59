"""Health alarms: the ``monitor`` thresholds applied to a step's metrics (docs/health.md).

Pure: a step's metrics in, the alarms that fire out. What an alarm *does* (a log line, a
Prefect artifact and event, failing the run) is the flow's business (flows/train.py). A module
of its own beside types.py: the pipeline raises alarms, the lake's health report and the
trackers recompute them, and none of those layers should import another to do so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from oreal_core.config.schema import MonitorConfig


class HealthAlarmError(RuntimeError):
    """A ``stop`` health alarm fired; the message names the metric, value, threshold and what to check."""


@dataclass(frozen=True)
class AlarmSpec:
    metric: str  # the metrics-table name it watches
    check: str  # what to look at when it fires


ALARMS: dict[str, AlarmSpec] = {
    "nonfinite": AlarmSpec("health/nonfinite", "a NaN/inf metric or a step refused for a non-finite loss term: "
                           "the train stage's log names the term; lower actor.optim.lr, check the batch's samples "
                           "and train.dtype"),
    "logprob_mismatch": AlarmSpec("health/logprob_abs_delta_mean", "the rollout engine samples from other weights "
                                  "than the trainer holds: did the weight reload after the last step succeed "
                                  "(rollout.weight_sync, the engine's log)? Do engine and trainer use the same dtype?"),
    "logprob_ratio_spread": AlarmSpec("health/logprob_ratio_std", "trainer/engine probability ratios spread wide: "
                                      "see logprob_mismatch; bf16 engines on long responses drift more"),
    "judge_errors": AlarmSpec("health/judge_error_rate", "the judge fails: is it up (verifier.judge.hosts), "
                              "overloaded (request_timeout_s, concurrency_per_proc)? Query the verdicts' reason column"),
    "rule_judge_disagreement": AlarmSpec("health/rule_judge_disagree_rate", "rule and judge contradict each other: "
                                         "read the disagreeing verdicts (oreal report: rule-vs-judge); a wrong "
                                         "gold answer, a judge prompt problem or a gamed judge"),
    "entropy_collapse": AlarmSpec("health/entropy", "the policy stopped exploring: check rollout.temperature, "
                                  "the learning rate and loss.kl_coef; pass@k will stop improving"),
    "length_blowup": AlarmSpec("health/truncated_frac", "responses run into rollout.max_new_tokens: look for "
                               "loops (health/repetitive_frac) and the length trend; raise the budget or the KL"),
    "multi_boxed": AlarmSpec("health/multi_boxed_frac", "responses give several different \\boxed answers, "
                             "a way to game a lenient checker: query the samples and their verdicts"),
    "boxed_without_work": AlarmSpec("health/boxed_without_work_frac", "responses box an answer with no working: "
                                    "guessing pays; check the verifier and the prompts' difficulty"),
    "repetition": AlarmSpec("health/repetitive_frac", "responses repeat themselves: degenerate sampling; check "
                            "entropy, the learning rate and rollout.top_p"),
    "correct_at_length_limit": AlarmSpec("health/correct_at_length_limit_frac", "'correct' responses that used the "
                                         "whole budget: is the answer extracted from a truncated text?"),
    "no_learning_signal": AlarmSpec("health/groups_no_signal_frac", "(nearly) every prompt's samples are all "
                                    "correct or all wrong, so no advantage is non-zero: is rollout.temperature near "
                                    "0 (identical samples)? Are the prompts too easy or too hard "
                                    "(data.difficulty_bands, oreal prepare)? Does the reward work?"),
    "all_correct": AlarmSpec("health/groups_all_correct_frac", "most prompts are solved by every sample: the "
                             "prompts got easy, or the reward pays for wrong answers; read a few 'correct' samples "
                             "against their gold answers (oreal samples RUN --signature ...; the verdicts table)"),
    "grad_norm": AlarmSpec("health/actor_grad_norm", "the actor's gradient norm spiked: check the batch, "
                           "actor.optim.lr and grad_clip; divergence often follows"),
}


@dataclass(frozen=True)
class Alarm:
    """One alarm that fired on one step."""

    name: str
    action: str  # warn | stop
    step: int
    metric: str
    value: float
    bound: str  # e.g. "> 0.1"
    check: str

    def message(self) -> str:
        return (f"health alarm {self.name!r} ({self.action}) at step {self.step}: {self.metric} = {self.value:.4g}, "
                f"threshold {self.bound} (monitor.{self.name}). Check: {self.check}")


def evaluate(monitor: MonitorConfig, step: int, metrics: dict[str, float]) -> list[Alarm]:
    """The alarms ``metrics`` of ``step`` fire; a metric the step did not record fires nothing.
    A NaN value fires any bound (it is never "inside" one)."""
    if not monitor.enabled:
        return []
    fired = []
    for name, cfg in monitor.alarms().items():
        spec = ALARMS[name]
        value = metrics.get(spec.metric)
        if cfg.action == "none" or value is None or step < cfg.after_step:
            continue
        bound = _outside(value, cfg.above, cfg.below)
        if bound:
            fired.append(Alarm(name, cfg.action, step, spec.metric, value, bound, spec.check))
    return fired


def _outside(value: float, above: float | None, below: float | None) -> str:
    """The violated bound as text ("> 0.1"), or "" when ``value`` is within the bounds."""
    if above is not None and (value > above or math.isnan(value)):
        return f"> {above:g}"
    if below is not None and (value < below or math.isnan(value)):
        return f"< {below:g}"
    return ""


def stop_message(alarms: list[Alarm]) -> str:
    """The run's failure text: every stop alarm, and how to resume."""
    stops = [a for a in alarms if a.action == "stop"]
    return ("; ".join(a.message() for a in stops) + ". The run stopped before the next step's rollout; "
            "fix the cause, or relax the threshold (e.g. --set monitor.NAME.above=...), then resume the run "
            "(monitor settings are not part of the run's config hash).")
