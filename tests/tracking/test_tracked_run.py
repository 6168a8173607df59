"""Tracking through the real training flow (issue 29, "Tests"): tiny tiny-cpu runs of
``flows.train.train`` on the HF engine, all in one lake.

* ``plain``: no tracking, the reference artefacts;
* ``tracked``: TensorBoard, MLflow and JSONL together; the train stage of step 1 crashes once
  (after step 0 was logged live), then the run resumes: every backend holds every committed
  metric of every step exactly once, the evaluations and the config;
* ``down``: every backend raises (at open, or on every write): the run succeeds with one
  warning per backend and artefacts identical to ``plain``'s.

Cost: 2 steps of 8 prompts x 4 samples, two evaluations of 8 problems, per run (~1-2 min
for the three on 2 cores, plus the SFT warm-up when the cache is cold).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flows.train import train
from oreal_core.config import load_config
from oreal_core.pipeline import stages
from oreal_core.store import Lake
from oreal_core.tracking import backend as backend_module
from oreal_core.tracking.names import tracker_metrics
from oreal_core.tracking.run_tracking import tracker_run
from tests.tracking.readers import SCALARS, mlflow_run, stored, tensorboard_texts

pytestmark = pytest.mark.slow

STEPS = 2
BACKENDS = ("tensorboard", "mlflow", "jsonl")
DETERMINISTIC = ("loss", "loss_pos", "loss_neg", "loss_kl", "kl", "rm_loss", "accuracy", "kept_samples",
                 "actor_grad_norm", "rm_grad_norm", "entropy", "response_tokens_mean")
DOWN = {"tensorboard": "RaisingBackend", "mlflow": "RaisingAfterOpen", "jsonl": "RaisingAfterOpen"}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sft_cache_dir):
    root = tmp_path_factory.mktemp("tracked-run")
    base = ["rollout.engine=hf", f"run.total_steps={STEPS}", f"run.eval_every={STEPS}", "eval.limit=8",
            "eval.max_new_tokens=64", "actor.freeze_steps=0", "data.prompts_per_step=8",
            "rollout.samples_per_prompt=4", "rollout.max_new_tokens=48", f"store.uri={root}/lake",
            f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}"]
    out = {"plain": train("tiny-cpu", base, "plain")}
    tracked = [*base, f"tracking.backends=[{','.join(BACKENDS)}]"]
    with pytest.MonkeyPatch.context() as mp:
        crashed = []

        def crash_once(session, step, real=stages.STAGES["train"]):
            if step == 1 and not crashed:
                crashed.append(step)
                raise RuntimeError("injected crash before step 1's train commit")
            return real(session, step)

        mp.setitem(stages.STAGES, "train", crash_once)
        with pytest.raises(RuntimeError, match="injected crash"):
            train("tiny-cpu", tracked, "tracked")
        out["tracked"] = train("tiny-cpu", tracked, "tracked")  # the resume: steps 1.. of the same run
    captured = Captured()
    logging.getLogger("oreal_core.tracking").addHandler(captured)
    with pytest.MonkeyPatch.context() as mp:
        for name, cls in DOWN.items():
            mp.setitem(backend_module.BACKENDS, name, ("tests.tracking.raising_backend", cls, ""))
        out["down"] = train("tiny-cpu", tracked, "down")
    logging.getLogger("oreal_core.tracking").removeHandler(captured)
    out["down_warnings"] = captured.messages
    out["overrides"] = tracked
    return out


def _committed(overrides: list[str], run_id: str) -> dict[int, dict[str, float]]:
    lake = Lake.open(load_config("tiny-cpu", overrides).store)
    metrics = {}
    for step in range(STEPS):
        table = lake.read(run_id, step, "metrics")
        metrics[step] = dict(zip(table["name"].to_pylist(), table["value"].to_pylist(), strict=True))
    return metrics


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_holds_every_metric_of_every_step_once(runs, backend):
    cfg = load_config("tiny-cpu", runs["overrides"])
    held = SCALARS[backend](tracker_run(cfg, "tracked"))
    for key, points in held.items():
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), f"{key}: a step written twice: {steps}"
    for step, metrics in _committed(runs["overrides"], "tracked").items():
        for key, value in tracker_metrics(metrics).items():
            points = dict(held[stored(backend, key)])
            assert points[step] == pytest.approx(value, rel=1e-6, nan_ok=True), (key, step)
        assert step in dict(held["timing_s/step"])  # the live path, not only the lake's copy
    for version, scores in runs["tracked"]["evals"].items():  # after the resume: the evaluation after step 1
        assert dict(held[stored(backend, "val/synthetic/pass@1")])[version] == pytest.approx(
            scores["eval/synthetic/pass1"])


def test_the_config_is_logged_with_its_hash(runs):
    cfg = load_config("tiny-cpu", runs["overrides"])
    run = tracker_run(cfg, "tracked")
    _, found = mlflow_run(run)
    assert found.data.params["config_hash"] == cfg.hash() and found.data.params["loss.kl_coef"] == "0.01"
    assert found.info.run_name == "tracked"
    assert tensorboard_texts(run)["hparams"] == [0]
    params = Path(run.folder) / "jsonl" / "tracked" / "params.jsonl"
    assert f'"value": "{cfg.hash()}"' in params.read_text()


def test_a_tracker_that_is_down_changes_nothing_but_a_warning(runs):
    assert runs["down"]["steps_run"] == STEPS
    for name in BACKENDS:
        said = [m for m in runs["down_warnings"] if m.startswith(f"tracking backend {name} ")]
        assert len(said) == 1, said
    lake = Lake.open(load_config("tiny-cpu", runs["overrides"]).store)
    for step in range(STEPS):
        for table in ("verdicts", "scored"):
            assert lake.read("down", step, table).drop_columns(["run_id"]).to_pylist() == \
                lake.read("plain", step, table).drop_columns(["run_id"]).to_pylist(), (step, table)
        timing = ["run_id", "gen_latency_s"]
        assert lake.read("down", step, "samples").drop_columns(timing).to_pylist() == \
            lake.read("plain", step, "samples").drop_columns(timing).to_pylist(), step
    down, plain = _committed(runs["overrides"], "down"), _committed(runs["overrides"], "plain")
    for step in range(STEPS):
        assert set(down[step]) == set(plain[step])
        for name in DETERMINISTIC:
            if name in plain[step]:
                assert down[step][name] == pytest.approx(plain[step][name], rel=1e-6, abs=1e-9), (step, name)
    assert runs["down"]["evals"].keys() == runs["plain"]["evals"].keys()
    for version, scores in runs["plain"]["evals"].items():
        assert runs["down"]["evals"][version]["eval/synthetic/pass1"] == scores["eval/synthetic/pass1"]


def test_a_few_rollouts_of_each_step_as_text(runs):
    run = tracker_run(load_config("tiny-cpu", runs["overrides"]), "tracked")
    assert tensorboard_texts(run)["samples"] == list(range(STEPS))
    lines = (Path(run.folder) / "jsonl" / "tracked" / "texts.jsonl").read_text().splitlines()
    table = json.loads(lines[0])["text"]
    assert table.startswith("| prompt | response | outcome | reward | finish |")
    assert len(table.splitlines()) == 2 + 4  # header + tracking.sample_rollouts rows
    assert "\\boxed" in table
