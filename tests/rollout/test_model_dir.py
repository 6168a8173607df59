"""Broken model folders are named in one line (config key and problem) by a cheap check of
config.json and the weight files' headers, before anything loads them."""

from __future__ import annotations

import json
import shutil

import pytest

from oreal_core.models.tiny import build_tiny_policy
from oreal_core.rollout.base import RolloutInputError
from oreal_core.rollout.policy_dir import check_model_dir, model_dir_problem


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("model-dir") / "policy")


@pytest.fixture
def copy_of(tiny_dir, tmp_path):
    return shutil.copytree(tiny_dir, tmp_path / "copy")


def test_a_whole_model_folder_passes(tiny_dir):
    assert model_dir_problem(tiny_dir) is None


def test_missing_empty_and_file_paths_are_named(tmp_path):
    with pytest.raises(RolloutInputError, match=r"^model.reference='.*nowhere': no such directory$"):
        check_model_dir(tmp_path / "nowhere", "model.reference")
    (tmp_path / "empty").mkdir()
    assert model_dir_problem(tmp_path / "empty") == "the directory is empty"
    (tmp_path / "file").write_text("x")
    assert model_dir_problem(tmp_path / "file") == "not a directory"


def test_config_json_missing_or_not_json(copy_of):
    (copy_of / "config.json").write_text('{"architectures": [')
    assert model_dir_problem(copy_of).startswith("config.json is not JSON (")
    (copy_of / "config.json").write_text("[1]")
    assert model_dir_problem(copy_of) == "config.json is not a JSON object"
    (copy_of / "config.json").unlink()
    assert model_dir_problem(copy_of).startswith("no config.json")


def test_no_weights_file(copy_of):
    (copy_of / "model.safetensors").unlink()
    assert model_dir_problem(copy_of).startswith("no weights file")


def test_a_truncated_safetensors_file_is_caught_from_its_header(copy_of):
    weights = copy_of / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])  # header whole, tensor bytes cut off
    assert model_dir_problem(copy_of) == (f"model.safetensors: truncated ({len(data) // 2} bytes; its header "
                                          f"describes {len(data)})")
    weights.write_bytes(data[:200])  # inside the header
    assert model_dir_problem(copy_of).startswith("model.safetensors: unreadable safetensors header")
    weights.write_bytes(b"not safetensors")
    assert model_dir_problem(copy_of).startswith("model.safetensors: unreadable safetensors header")


def test_a_sharded_index_naming_a_missing_shard(copy_of):
    (copy_of / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert model_dir_problem(copy_of) == ("model.safetensors.index.json names missing shards: "
                                          "model-00002-of-00002.safetensors")
