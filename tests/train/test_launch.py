"""The launcher path: the same entry point on one process and on two data-parallel ranks
(torchrun, gloo on CPU) must train the same weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from oreal_core.train.batch_files import read_scored_batch, write_scored_batch
from oreal_core.train.launch import parse_args, run
from tests.train.conftest import toy_batch

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["--set", "actor.freeze_steps=1", "--set", "train.micro_batch_tokens=64", "--set", "run.total_steps=4",
             "--set", "run.checkpoint_every=2", "--set", "actor.optim.warmup_steps=0",
             "--set", "token_rm.optim.warmup_steps=0"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batches")
    return [write_scored_batch(toy_batch(step, prompts=3, seed=step), folder / f"step{step}.json") for step in range(2)]


def test_scored_batch_json_round_trips(batch_files):
    assert read_scored_batch(batch_files[1]) == toy_batch(1, prompts=3, seed=1)


@pytest.mark.slow
def test_two_ranks_train_the_same_weights_as_one(batch_files, policy_dir, tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    common = [*map(str, batch_files), "--policy", str(policy_dir), *OVERRIDES]
    results = run(parse_args([*common, "--checkpoint-root", str(single)]))
    assert [r.status for r in results] == ["trained", "trained"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "oreal_core.train.launch", *common,
           "--checkpoint-root", str(double)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    one = load_file(single / "hf" / "step=000001" / "model.safetensors")
    two = load_file(double / "hf" / "step=000001" / "model.safetensors")
    start = load_file(policy_dir / "model.safetensors")
    assert any(not torch.equal(one[k], start[k]) for k in one)  # step 1 trained the actor
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
    m1 = json.loads((single / "results" / "step=000001.json").read_text())
    m2 = json.loads((double / "results" / "step=000001.json").read_text())
    assert m2["metrics"]["loss"] == pytest.approx(m1["metrics"]["loss"], rel=1e-4)
    assert m2["metrics"]["num_tokens"] == m1["metrics"]["num_tokens"]
    assert [r["sample_idx"] for r in m2["token_rm"]] == [r["sample_idx"] for r in m1["token_rm"]]
    assert (double / "state" / "step=000001" / "trainer_state.json").is_file()
    # Relaunching with --resume restores step 1's full state and skips the trained steps.
    assert run(parse_args([*common, "--checkpoint-root", str(single), "--resume"])) == []


def _rendezvous_in_child(env: dict[str, str]) -> tuple[str, str]:
    code = ("import os, torch.distributed as dist\n"
            "from oreal_core.train.distributed import init_process_group\n"
            "init_process_group()\n"
            "print(dist.get_world_size(), os.environ['MASTER_PORT'])")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DS_ACCELERATOR": "cpu", **env},
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    world, port = done.stdout.split()[-2:]
    return world, port


def test_a_child_of_a_one_process_run_picks_its_own_rendezvous_but_trusts_a_launcher():
    """A process that trained without a launcher leaves MASTER_PORT & co. in its environment
    (and keeps that port bound): a child that trains must not rendezvous there, while a
    launcher's variables (another port) in a grandchild are used as they are."""
    from oreal_core.train.distributed import DEFAULTS_TAG

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        parents = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": "0", "LOCAL_RANK": "0",
                   "WORLD_SIZE": "1", DEFAULTS_TAG: f"1:{port}"}
        world, used = _rendezvous_in_child(parents)
        assert world == "1" and used != port
        launchers = str(free_port())
        assert _rendezvous_in_child({**parents, "MASTER_PORT": launchers}) == ("1", launchers)
