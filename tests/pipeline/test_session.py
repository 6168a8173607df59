"""Opening a run: a resume under other code is refused unless asked for; the environment a run
started in is recorded, and a resume in another is warned about."""

from __future__ import annotations

import pytest
import torch

from oreal_core.config import StoreConfig
from oreal_core.models.tiny import build_tiny_policy
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.rollout.base import RolloutInputError
from oreal_core.store import CodeVersionMismatch, Lake
from oreal_core.store.errors import StorageUnavailable
from oreal_core.store.manifest import content_sha256
from tests.read_only import read_only


def test_resume_under_other_code_is_refused_unless_allowed(tmp_path, monkeypatch):
    policy = build_tiny_policy(tmp_path / "policy")  # a given policy: no SFT warm-up to open the run
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}")
    RunSession(RunSpec("r", "tiny-cpu", overrides)).close()  # engines open lazily: this only opens the run
    monkeypatch.setattr("oreal_core.store.lake.code_version", lambda: "0.1.0+gdifferent")
    with pytest.raises(CodeVersionMismatch, match=r"would resume under 0.1.0\+gdifferent.*--allow-code-change"):
        RunSession(RunSpec("r", "tiny-cpu", overrides))
    RunSession(RunSpec("r", "tiny-cpu", overrides, allow_code_change=True)).close()


def test_a_broken_reference_or_an_unwritable_lake_is_refused_before_the_run_exists(tmp_path):
    """A session opened by a deployment (no CLI in front): the same checks, before the SFT
    warm-up and the engines, instead of a failure in the first train stage after step 0's
    samples and verdicts were committed."""
    policy = build_tiny_policy(tmp_path / "policy")
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}")
    with pytest.raises(RolloutInputError, match=rf"^model.reference='{tmp_path}/gone': no such directory$"):
        RunSession(RunSpec("r", "tiny-cpu", (*overrides, f"model.reference={tmp_path}/gone")))
    assert not (tmp_path / "lake").exists()
    with read_only(tmp_path / "lake") as lake, pytest.raises(StorageUnavailable, match="cannot write in"):
        RunSession(RunSpec("r", "tiny-cpu", (*overrides, f"store.uri={lake}")))
    assert Lake.open(StoreConfig(uri=str(tmp_path / "lake"))).runs() == []


@pytest.mark.slow
def test_a_run_stopped_between_checkpoints_keeps_its_newest_weights_as_an_hf_checkpoint(tmp_path):
    from oreal_core.pipeline.stages import STAGE_TABLES, run_stage

    policy = build_tiny_policy(tmp_path / "policy")
    session = RunSession(RunSpec("stopped", "tiny-cpu", (
        f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}",
        "rollout.engine=hf", "run.checkpoint_every=10", "run.eval_every=0", "data.prompts_per_step=2",
        "rollout.samples_per_prompt=2", "rollout.max_new_tokens=8")))
    for stage in STAGE_TABLES:
        run_stage(stage, session, 0)
    hf_dir = session.checkpoints.hf_dir(0)
    assert not hf_dir.exists()  # memory weight sync: step 0 is no checkpoint step
    session.close()  # the run stops here (the train flow closes its session in `finally`)
    assert (hf_dir / "config.json").is_file() and (hf_dir / "model.safetensors").is_file()


def test_a_run_records_its_environment_and_a_resume_elsewhere_is_warned_about(tmp_path, monkeypatch, caplog):
    policy = build_tiny_policy(tmp_path / "policy")
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}")
    session = RunSession(RunSpec("r", "tiny-cpu", overrides))
    started = session.lake.run("r").environment
    session.close()
    assert started["start_policy"] == {"path": str(policy), "hash": content_sha256(policy)}
    assert started["seeds"] == {"run.seed": 0, "data.synthetic.seed": 0}
    assert started["libraries"]["torch"] == torch.__version__ and started["threads"]["torch"] >= 1

    RunSession(RunSpec("r", "tiny-cpu", overrides)).close()  # same environment: nothing to say
    assert "another environment" not in caplog.text
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    RunSession(RunSpec("r", "tiny-cpu", overrides)).close()
    assert f"threads.torch: {started['threads']['torch']} -> 64" in caplog.text
    assert RunSession(RunSpec("r", "tiny-cpu", overrides)).lake.run("r").environment == started  # the start's


def test_step_prompts_run_epochs_over_a_seeded_shuffle_whatever_the_order_steps_are_read(tmp_path):
    policy = build_tiny_policy(tmp_path / "policy")
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}",
                 "data.synthetic.train_size=50", "data.prompts_per_step=16")
    first = RunSession(RunSpec("a", "tiny-cpu", overrides))
    forward = [[p.prompt_id for p in first.step_prompts(step)] for step in range(7)]  # 112 draws: 3 epochs
    first.close()
    second = RunSession(RunSpec("b", "tiny-cpu", overrides))
    # Steps read out of order (a resumed run, the three stages of a step) draw the same prompts.
    assert [[p.prompt_id for p in second.step_prompts(step)] for step in (6, 3, 0, 5, 1, 4, 2)] == \
        [forward[step] for step in (6, 3, 0, 5, 1, 4, 2)]
    second.close()
    drawn = [pid for step in forward for pid in step]
    epochs = [drawn[:50], drawn[50:100]]
    assert all(sorted(e) == sorted(set(e)) and len(set(e)) == 50 for e in epochs)  # each prompt once an epoch
    assert epochs[0] != epochs[1]  # each epoch its own shuffle
