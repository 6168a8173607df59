"""Health metrics and alarms on crafted responses and tables (no model, no Prefect)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from oreal_core.alarms import ALARMS, evaluate, stop_message
from oreal_core.config import ConfigError, load_config
from oreal_core.config.schema import MonitorConfig
from oreal_core.pipeline import health
from oreal_core.pipeline.stages import step_summary

WORKED = "22 - 9 = 13\n13 + 12 = 25\nThe answer is \\boxed{25}.<|im_end|>"


# ------------------------------------------------------------------ signatures of one response

def test_several_different_boxed_answers():
    assert health.distinct_boxed(WORKED) == 1
    assert health.distinct_boxed("\\boxed{3} or maybe \\boxed{4}") == 2
    assert health.distinct_boxed("\\boxed{\\frac{1}{2}} so \\boxed{\\dfrac{1}{2}}") == 1  # same after normalising
    assert health.distinct_boxed("\\boxed{3} \\fbox{5} \\boxed{7") == 2  # the unbalanced one is no answer
    assert health.distinct_boxed("no box at all") == 0


def test_boxed_answer_without_working():
    assert not health.boxed_without_work(WORKED)
    assert health.boxed_without_work("\\boxed{25}<|im_end|>")
    assert health.boxed_without_work("  So:  \\boxed{25}")
    assert not health.boxed_without_work("no box, just 25")


def test_repeated_ngram_ratio():
    assert health.repeated_ngram_ratio(list(range(20))) == 0.0
    assert health.repeated_ngram_ratio([1, 2, 3]) == 0.0  # shorter than one n-gram
    loop = [5, 6, 7, 8] * 10  # 40 tokens, 33 8-grams, 4 distinct
    assert health.repeated_ngram_ratio(loop) == pytest.approx(1 - 4 / 33)
    assert health.repeated_ngram_ratio([1, 1, 1, 1], n=2) == pytest.approx(2 / 3)


# ------------------------------------------------------------------ step tables

def _samples(responses, tokens, finish, budget=10):
    n = len(responses)
    return pa.table({"response": responses, "token_ids": tokens, "num_tokens": [len(t) for t in tokens],
                     "finish_reason": finish, "max_new_tokens": [budget] * n, "prompt_id": ["p"] * n})


def _verdicts(prompt_ids, outcomes, sources=None, rules=None, reasons=None):
    n = len(outcomes)
    rewards = [None if o == "judge_error" else (1.0 if o == "correct" else -1.0) for o in outcomes]
    return pa.table({"prompt_id": prompt_ids, "outcome": outcomes, "correct": [o == "correct" for o in outcomes],
                     "reward": pa.array(rewards, pa.float32()), "source": sources or ["rule"] * n,
                     "rule_outcome": rules or [None] * n, "reason": reasons or ["r"] * n})


def test_length_distribution_and_truncation():
    tokens = [[1] * n for n in (2, 4, 6, 8, 10)]
    m = health.length_metrics(_samples(["x"] * 5, tokens, ["stop"] * 4 + ["length"]))
    assert m["health/truncated_frac"] == pytest.approx(0.2)
    assert m["health/length_p50"] == 6 and m["health/length_max"] == 10
    assert m["health/length_p90"] == pytest.approx(9.2) and m["health/length_p90_of_budget"] == pytest.approx(0.92)


def test_groups_all_correct_and_all_wrong():
    pids = ["a"] * 2 + ["b"] * 2 + ["c"] * 2 + ["d"] * 2
    outcomes = ["correct", "correct", "incorrect", "truncated", "correct", "incorrect", "judge_error", "judge_error"]
    m = health.group_metrics(_verdicts(pids, outcomes))
    # a: all correct, b: all wrong, c: mixed, d: nothing graded (neither)
    assert m["health/groups_all_correct_frac"] == 0.25 and m["health/groups_all_wrong_frac"] == 0.25
    assert m["health/groups_no_signal_frac"] == 0.5


def test_a_step_the_judge_graded_nothing_records_no_mean_reward_and_no_nonfinite():
    samples = _samples(["x", "y"], [[1], [2]], ["stop", "stop"])
    verdicts = _verdicts(["p", "p"], ["judge_error", "judge_error"])
    scored = pa.table({"kept": [False, False]})
    summary = step_summary(samples, verdicts, scored)
    assert "mean_reward" not in summary and summary["accuracy"] == 0.0 and summary["kept_samples"] == 0.0
    assert health.nonfinite_count({**summary, **health.step_health(samples, verdicts, summary)}, refused=False) == 0


def test_judge_error_and_disagreement_rates():
    outcomes = ["correct", "incorrect", "judge_error", "correct", "incorrect", "correct"]
    sources = ["rule", "judge", "judge", "judge", "rule", "judge"]
    rules = [None, "correct", "incorrect", "incorrect", None, "unparseable"]
    reasons = ["r", "j", "judge error: timeout", "j", "judge error: 503; graded by the rule alone", "j"]
    m = health.judge_metrics(_verdicts(["p"] * 6, outcomes, sources, rules, reasons))
    # asked: the 4 judge rows + the rule fallback; failed: the judge_error + the fallback
    assert m["health/judge_asked"] == 5 and m["health/judge_error_rate"] == pytest.approx(2 / 5)
    # decided by the judge against a definite rule verdict: rows 1 and 3, both contradicting
    assert m["health/rule_judge_disagree_rate"] == 1.0
    assert health.judge_metrics(_verdicts(["p"], ["correct"]))["health/judge_error_rate"] == 0.0


def test_hacking_signatures_over_a_step():
    responses = [WORKED, "\\boxed{1} \\boxed{2}", "\\boxed{7}", "1 + 1 = 2 " * 5 + "\\boxed{2}"]
    tokens = [list(range(10)), [1, 2], [3], [4, 5, 6, 7] * 10]
    samples = _samples(responses, tokens, ["stop", "stop", "stop", "length"], budget=40)
    verdicts = _verdicts(["p"] * 4, ["correct", "incorrect", "correct", "correct"])
    m = health.hacking_metrics(samples, verdicts)
    assert m["health/multi_boxed_frac"] == 0.25
    assert m["health/boxed_without_work_frac"] == 0.5  # responses 1 and 2
    assert m["health/repetitive_frac"] == 0.25
    assert m["health/correct_at_length_limit_frac"] == pytest.approx(1 / 3)  # one of three correct


def test_step_health_renames_trainer_metrics_and_counts_nonfinite():
    samples = _samples([WORKED], [[1, 2, 3]], ["stop"])
    out = health.step_health(samples, _verdicts(["p"], ["correct"]),
                             {"entropy": 0.1, "kl": 0.01, "actor_grad_norm": 0.5, "health/logprob_abs_delta_mean": 1e-6,
                              "loss": 1.0})
    assert out["health/entropy"] == 0.1 and out["health/kl_ref"] == 0.01 and out["health/actor_grad_norm"] == 0.5
    assert out["health/logprob_abs_delta_mean"] == 1e-6 and "loss" not in out
    assert health.nonfinite_count({"a": 1.0, "b": math.nan, "c": math.inf}, refused=False) == 2
    assert health.nonfinite_count({"a": 1.0}, refused=True) == 1


# ------------------------------------------------------------------ alarms

def test_every_monitor_alarm_watches_a_known_metric():
    assert set(MonitorConfig().alarms()) == set(ALARMS)


def test_alarms_fire_on_their_bounds_only():
    monitor = MonitorConfig()
    healthy = {"health/nonfinite": 0.0, "health/logprob_abs_delta_mean": 0.01, "health/entropy": 0.3,
               "health/truncated_frac": 0.0, "health/judge_error_rate": 0.0}
    assert evaluate(monitor, 3, healthy) == []
    sick = {**healthy, "health/logprob_abs_delta_mean": 2.0, "health/entropy": 0.01}
    fired = {a.name: a for a in evaluate(monitor, 3, sick)}
    assert set(fired) == {"logprob_mismatch", "entropy_collapse"}
    assert fired["logprob_mismatch"].action == "stop" and fired["logprob_mismatch"].bound == "> 0.1"
    assert fired["entropy_collapse"].action == "warn" and fired["entropy_collapse"].bound == "< 0.05"
    text = stop_message(list(fired.values()))
    assert "health/logprob_abs_delta_mean = 2" in text and "> 0.1" in text and "weight reload" in text
    assert "entropy" not in text  # a warn is not a reason to stop


def test_nan_fires_and_missing_metrics_do_not():
    fired = evaluate(MonitorConfig(), 0, {"health/entropy": math.nan})
    assert [a.name for a in fired] == ["entropy_collapse"]
    assert evaluate(MonitorConfig(), 0, {}) == []
    assert evaluate(MonitorConfig(enabled=False), 0, {"health/nonfinite": 3.0}) == []


def test_after_step_and_action_none():
    cfg = load_config("tiny-cpu", ["monitor.grad_norm.after_step=5", "monitor.nonfinite.action=none"])
    metrics = {"health/actor_grad_norm": 1e6, "health/nonfinite": 1.0}
    assert evaluate(cfg.monitor, 4, metrics) == []
    assert [a.name for a in evaluate(cfg.monitor, 5, metrics)] == ["grad_norm"]


# ------------------------------------------------------------------ the monitor config

def test_a_partial_alarm_override_keeps_the_alarms_default_action():
    cfg = load_config("oreal-7b", ["monitor.logprob_mismatch.above=0.5", "monitor.entropy_collapse.action=stop"])
    assert cfg.monitor.logprob_mismatch.action == "stop" and cfg.monitor.logprob_mismatch.above == 0.5
    assert cfg.monitor.entropy_collapse.action == "stop" and cfg.monitor.entropy_collapse.below is not None


@pytest.mark.parametrize("override, message", [
    ("monitor.entropy_collapse.action=loud", "monitor.entropy_collapse.action='loud': must be one of"),
    ("monitor.grad_norm={above: 1, below: 2}", "monitor.grad_norm.below=2.0: must be <= above=1.0"),
    ("monitor.grad_norm.after_step=-1", "monitor.grad_norm.after_step=-1: must be >= 0"),
    ("monitor.grad_norm.abov=1", "did you mean 'monitor.grad_norm.above'"),
])
def test_monitor_range_checks_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("tiny-cpu", [override])
    assert message in str(err.value)


def test_monitor_is_not_part_of_the_run_identity():
    base = load_config("tiny-cpu")
    relaxed = load_config("tiny-cpu", ["monitor.logprob_mismatch.above=5", "monitor.enabled=false"])
    assert relaxed.hash() == base.hash() and relaxed != base
    assert load_config("tiny-cpu", ["loss.kl_coef=0.02"]).hash() != base.hash()
    assert "monitor" in base.to_dict()  # still recorded with the run's config.yaml
