"""The metric-name mapping (oreal_core/tracking/names.py) on a real step's metrics."""

from __future__ import annotations

from oreal_core.tracking.names import CONVENTIONAL, tracker_metrics, tracker_name
from tests.tracking.step_metrics import EVAL_SCORES, STEP_METRICS


def test_the_conventional_names_of_a_real_step():
    names = tracker_metrics(STEP_METRICS)
    for expected in ("actor/pg_loss", "actor/entropy", "actor/grad_norm", "critic/score/mean",
                     "response_length/mean", "response_length/clip_ratio", "perf/throughput",
                     "timing_s/rollout", "timing_s/verify", "timing_s/score", "timing_s/train"):
        assert expected in names, expected


def test_oreal_own_metrics_keep_their_name_under_oreal():
    assert tracker_name("loss_pos") == "oreal/loss_pos"
    assert tracker_name("loss_neg") == "oreal/loss_neg"
    assert tracker_name("rm/bce") == "oreal/rm/bce"
    assert tracker_name("rm/within_pair_accuracy") == "oreal/rm/within_pair_accuracy"
    assert tracker_name("health/judge_error_rate") == "oreal/health/judge_error_rate"
    assert tracker_name("a_name_nobody_maps") == "oreal/a_name_nobody_maps"


def test_stage_seconds_and_evaluations():
    assert tracker_name("time/rollout_s") == "timing_s/rollout"
    assert tracker_name("time/eval_s") == "timing_s/eval"
    assert tracker_metrics(EVAL_SCORES) == {
        "timing_s/eval": EVAL_SCORES["time/eval_s"],
        "val/synthetic/pass@1": EVAL_SCORES["eval/synthetic/pass1"],
        "val/synthetic/pass@1_low": EVAL_SCORES["eval/synthetic/pass1_low"],
        "val/synthetic/pass@1_high": EVAL_SCORES["eval/synthetic/pass1_high"],
        "val/synthetic/problems": EVAL_SCORES["eval/synthetic/problems"],
        "val/synthetic/problems_per_s": EVAL_SCORES["eval/synthetic/problems_per_s"],
    }


def test_no_two_metrics_share_a_tracker_name():
    assert len(tracker_metrics(STEP_METRICS)) == len(STEP_METRICS)
    assert len(set(CONVENTIONAL.values())) == len(CONVENTIONAL)
    assert not any(name.startswith("oreal/") for name in CONVENTIONAL.values())

