"""The training flow end to end under Prefect, and kill -9 in each stage then resume.

A real `oreal train` process is SIGKILLed while it works in a given stage (right after the
previous stage's artefact is committed), then `oreal resume` finishes the run; every
artefact must equal the one of an uninterrupted run with the same config.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.train import train
from oreal_core.config import load_config
from oreal_core.store import Lake

pytestmark = pytest.mark.slow

DETERMINISTIC = ("loss", "loss_pos", "loss_neg", "loss_kl", "kl", "rm_loss", "accuracy", "kept_samples",
                 "actor_grad_norm", "rm_grad_norm")


def _overrides(root: Path, sft_cache_dir) -> list[str]:
    return ["rollout.engine=hf", "run.total_steps=1", "run.eval_every=0", "actor.freeze_steps=0",
            "data.prompts_per_step=8", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64",
            f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}"]


def _tables(overrides: list[str], run_id: str) -> dict:
    lake = Lake.open(load_config("tiny-cpu", overrides).store)
    out = {t: lake.read(run_id, 0, t).drop_columns(["run_id"]).to_pylist() for t in ("verdicts", "scored")}
    out["samples"] = lake.read(run_id, 0, "samples").drop_columns(["run_id", "gen_latency_s"]).to_pylist()
    metrics = {m["name"]: m["value"] for m in lake.read(run_id, 0, "metrics").to_pylist()}
    out["metrics"] = {k: metrics[k] for k in DETERMINISTIC}
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sft_cache_dir):
    overrides = _overrides(tmp_path_factory.mktemp("flow-ref"), sft_cache_dir)
    result = train("tiny-cpu", overrides, "ref")
    assert result["steps_run"] == 1 and result["history"][0]["accuracy"] >= 0
    return _tables(overrides, "ref")


def test_flow_commits_every_stage(reference):
    assert len(reference["samples"]) == 32 and len(reference["verdicts"]) == 32
    assert reference["metrics"]["kept_samples"] == sum(r["kept"] for r in reference["scored"])


def _oreal(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "oreal"), *args]


@pytest.mark.parametrize("stage, after", [("rollout", "run.json"), ("verify", "samples"), ("score", "verdicts"),
                                          ("train", "scored")])
def test_sigkill_in_each_stage_then_resume_reproduces_the_run(reference, tmp_path, sft_cache_dir, stage, after):
    overrides = _overrides(tmp_path, sft_cache_dir)
    sets = [a for o in overrides for a in ("--set", o)]
    marker = (tmp_path / "lake/runs/killed/run.json" if after == "run.json"
              else tmp_path / f"lake/runs/killed/step=0/{after}.manifest.json")
    proc = subprocess.Popen(_oreal("train", "--run-id", "killed", *sets), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, f"run ended before {stage}: {proc.stderr.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the process is now working on `stage`
    assert proc.wait() == -signal.SIGKILL

    done = subprocess.run(_oreal("resume", "killed", *sets), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = _tables(overrides, "killed")
    for table in ("samples", "verdicts", "scored"):
        assert resumed[table] == reference[table], table
    for name, value in reference["metrics"].items():
        assert resumed["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_resume_with_a_changed_config_is_refused(reference, tmp_path, sft_cache_dir):
    overrides = _overrides(tmp_path, sft_cache_dir)
    sets = [a for o in overrides for a in ("--set", o)]
    train("tiny-cpu", overrides, "changed")
    done = subprocess.run(_oreal("resume", "changed", *sets, "--set", "loss.kl_coef=0.5"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and "loss.kl_coef: 0.01 -> 0.5" in done.stderr


def test_training_evaluates_on_schedule_and_records_the_best_checkpoint(tmp_path, sft_cache_dir):
    overrides = [o for o in _overrides(tmp_path, sft_cache_dir) if not o.startswith("run.eval_every")]
    overrides += ["run.eval_every=1", "eval.benchmarks=[synthetic]", "eval.limit=16", "eval.max_new_tokens=64"]
    result = train("tiny-cpu", overrides, "evals")
    assert sorted(result["evals"]) == [0, 1]  # the start policy, then after the only step
    for scores in result["evals"].values():
        assert 0.0 <= scores["eval/synthetic/pass1"] <= 1.0 and scores["eval/synthetic/problems"] == 16
    best = result["best_checkpoint"]
    assert best["bench"] == "synthetic" and best["pass1"] == max(e["eval/synthetic/pass1"] for e in result["evals"].values())
    lake = Lake.open(load_config("tiny-cpu", overrides).store)
    assert lake.read("evals", 0, "eval").num_rows == 32  # both checkpoints' records, in step 0's partition
