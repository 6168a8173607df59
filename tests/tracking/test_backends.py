"""Each backend, driven through the Tracker with a real step's metrics, read back with the
backend's own reader (TensorBoard's EventAccumulator, MLflow's client on its SQLite store,
DuckDB on the JSONL files): every metric of every step once, and a resumed tracker run that
replays steps writes none of them twice."""

from __future__ import annotations

import json
from functools import partial

import duckdb
import pytest

from oreal_core.tracking.backend import TrackerRun, backend_for
from oreal_core.tracking.names import tracker_metrics
from oreal_core.tracking.tracker import Tracker
from tests.tracking.readers import SCALARS, mlflow_run, stored, tensorboard_texts
from tests.tracking.step_metrics import EVAL_SCORES, STEP_METRICS

BACKENDS = ("tensorboard", "mlflow", "jsonl")


def step_values(step: int) -> dict[str, float]:
    """A real step's metrics and an evaluation's scores (``val/<bench>/pass@1``: MLflow spells the
    '@' out), moved by the step so a value read back names its step."""
    return {k: v + step for k, v in tracker_metrics({**STEP_METRICS, **EVAL_SCORES}).items()}


def log_steps(run: TrackerRun, backend: str, steps: range, history=None) -> None:
    with Tracker({backend: partial(backend_for, backend, run)}, history=history) as tracker:
        tracker.log_params({"run_id": run.run_id, "config_hash": "abc123", "loss.kl_coef": "0.01"})
        for step in steps:
            tracker.log_scalars(step, step_values(step))
            tracker.log_text(step, "samples", f"| prompt | response |\n|---|---|\n| step {step} | ... |")


def assert_each_step_once(held: dict, backend: str, steps: range) -> None:
    expected = {stored(backend, k) for k in step_values(0)}
    assert expected <= set(held), sorted(expected - set(held))[:5]
    for key in expected:
        assert [s for s, _ in held[key]] == list(steps), key
        for step, value in held[key]:
            assert value == pytest.approx(step_values(step)[next(k for k in step_values(0)
                                                                 if stored(backend, k) == key)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_run_writes_every_metric_of_every_step_once(tmp_path, backend):
    run = TrackerRun("tiny-run", "tiny-cpu", tmp_path)
    log_steps(run, backend, range(3))
    assert_each_step_once(SCALARS[backend](run), backend, range(3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resume_that_replays_steps_appends_each_step_once(tmp_path, backend):
    run = TrackerRun("resumed", "tiny-cpu", tmp_path)
    log_steps(run, backend, range(0, 4))
    log_steps(run, backend, range(2, 6))  # steps 2 and 3 replayed after the "kill"
    assert_each_step_once(SCALARS[backend](run), backend, range(6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_runs_never_share_a_tracker_run(tmp_path, backend):
    log_steps(TrackerRun("first", "tiny-cpu", tmp_path), backend, range(3))
    log_steps(TrackerRun("second", "tiny-cpu", tmp_path), backend, range(2))
    assert_each_step_once(SCALARS[backend](TrackerRun("first", "tiny-cpu", tmp_path)), backend, range(3))
    assert_each_step_once(SCALARS[backend](TrackerRun("second", "tiny-cpu", tmp_path)), backend, range(2))


def test_the_params_and_texts_where_the_backend_has_them(tmp_path):
    run = TrackerRun("texts", "tiny-cpu", tmp_path)
    for backend in BACKENDS:
        log_steps(run, backend, range(2))
        log_steps(run, backend, range(1, 3))  # a resume: params not written again
    assert tensorboard_texts(run) == {"hparams": [0], "samples": [0, 1, 2]}
    client, found = mlflow_run(run)
    assert found.data.params == {"run_id": "texts", "config_hash": "abc123", "loss.kl_coef": "0.01"}
    assert found.info.run_name == "texts" and found.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(found.info.run_id, "samples")) == [
        f"samples/step_00000{s}.md" for s in range(3)]
    folder = tmp_path / "jsonl" / "texts"
    assert duckdb.sql(f"SELECT list(step ORDER BY step) FROM read_json_auto('{folder}/texts.jsonl')").fetchone()[0] == \
        [0, 1, 2]
    assert duckdb.sql(f"SELECT count(*) FROM read_json_auto('{folder}/params.jsonl')").fetchone()[0] == 3


def test_a_jsonl_line_cut_by_a_kill_is_dropped_on_reopen(tmp_path):
    run = TrackerRun("cut", "tiny-cpu", tmp_path)
    log_steps(run, "jsonl", range(2))
    path = tmp_path / "jsonl" / "cut" / "metrics.jsonl"
    with path.open("a") as file:
        file.write(json.dumps({"run_id": "cut", "step": 2, "name": "actor/pg_loss", "value": 1.0})[:30])
    log_steps(run, "jsonl", range(2, 4))
    assert_each_step_once(SCALARS["jsonl"](run), "jsonl", range(4))


def test_non_finite_values_are_kept_where_the_store_can_hold_them(tmp_path):
    run = TrackerRun("nan", "tiny-cpu", tmp_path)
    for backend in BACKENDS:
        with Tracker({backend: partial(backend_for, backend, run)}) as tracker:
            tracker.log_scalars(0, {"actor/pg_loss": float("nan"), "actor/grad_norm": float("inf")})
    assert SCALARS["jsonl"](run) == {"actor/grad_norm": [(0, None)], "actor/pg_loss": [(0, None)]}
    for backend in ("tensorboard", "mlflow"):
        held = SCALARS[backend](run)
        assert held["actor/pg_loss"][0][1] != held["actor/pg_loss"][0][1]  # NaN
        assert held["actor/grad_norm"][0][1] > 1e300
