"""Run-health metrics of one step (docs/health.md), computed from the step's lake tables.

RL runs fail silently more often than they crash: the engine samples from stale weights,
the judge starts erroring, lengths run into the limit, responses learn to game the
checker. These ``health/`` metrics go into the metrics table with the rest of the step, so
``monitor`` alarms (oreal_core/alarms.py) and DuckDB queries can watch them.

The trainer-side ones (entropy, KL, log-prob mismatch, gradient norms) come with the
trainer's StepMetrics, so they reach here under any ``train.launcher``; this module only
renames them into the ``health/`` namespace and adds what the samples and verdicts show.
All functions are pure: tables (or strings) in, floats out.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pyarrow as pa

# The per-response signatures live beside the answer extraction they read, so the lake's SQL
# views can register them without depending on this orchestration-side module.
from oreal_core.verify.signatures import (  # noqa: F401 - re-exported
    MIN_WORK_CHARS,
    REPEAT_NGRAM,
    REPETITIVE_RATIO,
    boxed_without_work,
    distinct_boxed,
    repeated_ngram_ratio,
)

_DECIDED = ("correct", "incorrect")

# Trainer metrics shown under their health/ name as well (they exist already; see trainer.py).
TRAINER_ALIASES = {"entropy": "health/entropy", "kl": "health/kl_ref", "actor_grad_norm": "health/actor_grad_norm",
                   "rm_grad_norm": "health/rm_grad_norm"}


def length_metrics(samples: pa.Table) -> dict[str, float]:
    """Truncation rate and the response-length distribution (tokens) of all the step's samples."""
    lengths = np.asarray(samples["num_tokens"].to_numpy(zero_copy_only=False), dtype=np.float64)
    if not lengths.size:
        return {}
    budget = np.asarray(samples["max_new_tokens"].to_numpy(zero_copy_only=False), dtype=np.float64)
    truncated = np.asarray([r == "length" for r in samples["finish_reason"].to_pylist()])
    p90 = float(np.percentile(lengths, 90))
    return {"health/truncated_frac": float(truncated.mean()), "health/length_p50": float(np.percentile(lengths, 50)),
            "health/length_p90": p90, "health/length_max": float(lengths.max()),
            "health/length_p90_of_budget": p90 / float(budget.max())}


def group_metrics(verdicts: pa.Table) -> dict[str, float]:
    """Share of prompts whose graded samples are all correct / all wrong (nothing to learn from).
    Ungraded samples (judge errors) are left out; a prompt with none graded counts in neither."""
    groups: dict[str, list[float]] = defaultdict(list)
    for pid, reward in zip(verdicts["prompt_id"].to_pylist(), verdicts["reward"].to_pylist(), strict=True):
        graded = groups[pid]  # created even when nothing is graded: the prompt still counts
        if reward is not None:
            graded.append(reward)
    if not groups:
        return {}
    n = len(groups)
    all_correct = sum(bool(r) and min(r) > 0 for r in groups.values()) / n
    all_wrong = sum(bool(r) and max(r) <= 0 for r in groups.values()) / n
    return {"health/groups_all_correct_frac": all_correct, "health/groups_all_wrong_frac": all_wrong,
            "health/groups_no_signal_frac": all_correct + all_wrong}


def judge_metrics(verdicts: pa.Table) -> dict[str, float]:
    """Judge error rate (of the samples sent to the judge) and rule-vs-judge disagreement rate
    (of the samples the judge decided where the rule was definite), from the verdict columns."""
    cols = verdicts.select(["outcome", "source", "rule_outcome", "reason"]).to_pydict()
    asked = failed = decided = disagree = 0
    for outcome, source, rule, reason in zip(*cols.values(), strict=True):
        # on_judge_error=rule keeps the rule's verdict (source rule) with a "judge error:" reason
        fell_back = source == "rule" and reason.startswith("judge error:")
        asked += source == "judge" or fell_back
        failed += outcome == "judge_error" or fell_back
        if source == "judge" and outcome in _DECIDED and rule in _DECIDED:
            decided += 1
            disagree += outcome != rule
    return {"health/judge_error_rate": failed / asked if asked else 0.0,
            "health/judge_asked": float(asked),
            "health/rule_judge_disagree_rate": disagree / decided if decided else 0.0}


def hacking_metrics(samples: pa.Table, verdicts: pa.Table) -> dict[str, float]:
    """Reward-hacking signatures, as shares of the step's samples (and of its correct ones)."""
    responses = samples["response"].to_pylist()
    if not responses:
        return {}
    correct = verdicts["correct"].to_pylist()
    tokens = samples["token_ids"].to_pylist()
    at_limit = [fr == "length" or n >= budget for fr, n, budget in zip(
        samples["finish_reason"].to_pylist(), samples["num_tokens"].to_pylist(),
        samples["max_new_tokens"].to_pylist(), strict=True)]
    ratios = [repeated_ngram_ratio(t) for t in tokens]
    n, n_correct = len(responses), max(sum(correct), 1)
    return {
        "health/multi_boxed_frac": sum(distinct_boxed(r) > 1 for r in responses) / n,
        "health/boxed_without_work_frac": sum(boxed_without_work(r) for r in responses) / n,
        "health/repeat_ngram_mean": sum(ratios) / n,
        "health/repetitive_frac": sum(r > REPETITIVE_RATIO for r in ratios) / n,
        # among the correct samples: a correct answer should not need the whole budget
        "health/correct_at_length_limit_frac": sum(c and lim for c, lim in zip(correct, at_limit, strict=True))
        / n_correct,
    }


def nonfinite_count(values: dict[str, float], refused: bool) -> float:
    """Non-finite metric values, plus one for a step the trainer refused for a non-finite loss term."""
    return float(sum(not math.isfinite(v) for v in values.values()) + refused)


def step_health(samples: pa.Table, verdicts: pa.Table, trainer_values: dict[str, float]) -> dict[str, float]:
    """Every health/ metric of a step: the tables' signatures plus the trainer's, renamed."""
    out = {**length_metrics(samples), **group_metrics(verdicts), **judge_metrics(verdicts),
           **hacking_metrics(samples, verdicts)}
    out.update({alias: trainer_values[name] for name, alias in TRAINER_ALIASES.items() if name in trainer_values})
    out.update({k: v for k, v in trainer_values.items() if k.startswith("health/")})
    return out
