"""What the run sends (oreal_core/tracking/run_tracking.py), on a real lake without a model:
the live step, committed steps no tracker saw (a run that fails after a commit, a tracker
added on a resume), alarms as flags, the config as parameters."""

from __future__ import annotations

import pytest

from oreal_core.alarms import evaluate
from oreal_core.config import load_config
from oreal_core.store import Lake
from oreal_core.tracking.run_tracking import run_params, run_tracking, tracker_run
from oreal_core.types import StepMetrics
from tests.tracking.readers import jsonl_scalars
from tests.tracking.step_metrics import STEP_METRICS

TRAIN_METRICS = {k: v for k, v in STEP_METRICS.items() if not k.startswith(("time/", "rollout_", "verify/", "score/"))}


def open_run(tmp_path, *extra):
    cfg = load_config("tiny-cpu", [f"store.uri={tmp_path}/lake", "tracking.backends=[jsonl]",
                                   "tracking.sample_rollouts=0", *extra])
    lake = Lake.open(cfg.store)
    lake.open_run("run", cfg.hash())
    return cfg, lake


def commit(lake: Lake, step: int, values: dict[str, float]) -> None:
    lake.write("run", step, "metrics", [StepMetrics.of(step, values)])


def test_a_run_failing_after_a_commit_sends_the_committed_step(tmp_path):
    cfg, lake = open_run(tmp_path)
    with pytest.raises(RuntimeError, match="stop alarm"), run_tracking(cfg, "run", lake, 0) as tracking:
        commit(lake, 0, TRAIN_METRICS)
        tracking.step(0, STEP_METRICS, 3.0)
        commit(lake, 1, TRAIN_METRICS)
        raise RuntimeError("stop alarm after step 1's commit")
    held = jsonl_scalars(tracker_run(cfg, "run"))
    assert [s for s, _ in held["actor/pg_loss"]] == [0, 1]
    assert [s for s, _ in held["timing_s/step"]] == [0]  # step 1 came from the lake
    assert [s for s, _ in held["timing_s/rollout"]] == [0]


def test_a_tracker_added_on_a_resume_catches_up_from_the_lake(tmp_path):
    cfg, lake = open_run(tmp_path)
    for step in range(3):  # a run that went three steps without tracking
        commit(lake, step, {**TRAIN_METRICS, "loss": float(step)})
    with run_tracking(cfg, "run", lake, 3) as tracking:
        commit(lake, 3, {**TRAIN_METRICS, "loss": 3.0})
        tracking.step(3, {**STEP_METRICS, "loss": 3.0}, 3.0)
    held = jsonl_scalars(tracker_run(cfg, "run"))
    assert held["actor/pg_loss"] == [(s, float(s)) for s in range(4)]


def test_alarms_become_flags_and_the_config_parameters(tmp_path):
    cfg, lake = open_run(tmp_path)
    metrics = {**STEP_METRICS, "truncated_frac": 0.9, "health/truncated_frac": 0.9}
    with run_tracking(cfg, "run", lake, 0) as tracking:
        tracking.step(0, metrics, 3.0)
    held = jsonl_scalars(tracker_run(cfg, "run"))
    assert held["alarm/length_blowup"] == [(0, 1.0)]
    assert {k for k in held if k.startswith("alarm/")} == {f"alarm/{a.name}" for a in evaluate(cfg.monitor, 0, metrics)}
    params = run_params(cfg, "run")
    assert params["config_hash"] == cfg.hash() and params["loss.kl_coef"] == "0.01"
    assert params["data.difficulty_bands"].startswith("[[")
