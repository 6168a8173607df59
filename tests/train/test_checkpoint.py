import shutil

import pytest

from oreal_core.train.checkpoint import (
    CheckpointLayout,
    check_compatible,
    config_differences,
    model_fingerprint,
    publish_dir,
    staging_dir,
)
from oreal_core.train.results import CheckpointMismatchError


def test_hf_checkpoint_pruning_keeps_the_newest_and_every_eval_step(tmp_path):
    layout = CheckpointLayout(tmp_path)
    for step in range(12):
        layout.hf_dir(step).mkdir(parents=True)
    assert layout.prune_hf(0, 5) == []
    gone = layout.prune_hf(2, 5)
    left = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert left == ["step=000004", "step=000009", "step=000010", "step=000011"]
    assert len(gone) == 8


def test_latest_state_ignores_incomplete_directories(tmp_path):
    layout = CheckpointLayout(tmp_path)
    assert layout.latest_state() is None
    for step in (1, 3):
        layout.state_dir(step).mkdir(parents=True)
        (layout.state_dir(step) / "trainer_state.json").write_text("{}")
    staging_dir(layout.state_dir(5)).mkdir()  # a crashed save: never a final name
    layout.state_dir(7).mkdir()  # no trainer_state.json: not complete
    assert layout.latest_state() == layout.state_dir(3)


def test_publish_replaces_an_existing_directory_whole(tmp_path):
    final = tmp_path / "hf" / "step=000001"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    tmp = staging_dir(final)
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    publish_dir(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"] and not tmp.exists()


def test_fingerprint_changes_with_weights_not_location(policy_dir, other_policy_dir, tmp_path):
    copy = shutil.copytree(policy_dir, tmp_path / "copy")
    assert model_fingerprint(copy) == model_fingerprint(policy_dir)
    assert model_fingerprint(other_policy_dir) != model_fingerprint(policy_dir)


def test_mismatch_message_lists_every_difference(tmp_path):
    saved = {"config_hash": "a", "config": {"loss": {"kl_coef": 0.01}, "run": {"seed": 0}},
             "policy": "/m/sft", "model_fingerprint": "f1", "world_size": 8}
    assert config_differences(saved["config"], {"loss": {"kl_coef": 0.02}, "run": {"seed": 0}}) == [
        "loss.kl_coef: 0.01 -> 0.02"]
    current = {**saved, "config_hash": "b", "config": {"loss": {"kl_coef": 0.02}, "run": {"seed": 0}},
               "model_fingerprint": "f2", "world_size": 4}
    with pytest.raises(CheckpointMismatchError) as err:
        check_compatible(saved, current, tmp_path)
    text = str(err.value)
    assert "loss.kl_coef: 0.01 -> 0.02" in text and "fingerprint f1" in text and "world size 8 != this run's 4" in text
    check_compatible(saved, dict(saved), tmp_path)  # identical: accepted
