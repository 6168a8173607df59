"""One process per run, a resume of an unknown run refused, a resume with other prompts refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from oreal_core.config import StoreConfig, load_config
from oreal_core.models.tiny import build_tiny_policy
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.store import ConfigMismatch, Lake, PromptsMismatch, RunLocked
from oreal_core.store.runlock import acquire_run_lock, lock_path

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from pathlib import Path
from oreal_core.config import StoreConfig
from oreal_core.store import Lake
from oreal_core.store.runlock import acquire_run_lock
lock = acquire_run_lock(Lake.open(StoreConfig(uri=sys.argv[1])), "r1", Path(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()  # hold until the test closes our stdin
"""


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    lake = Lake.open(StoreConfig(uri=str(tmp_path / "lake")))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "lake"), str(tmp_path / "ckpt")],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        path = lock_path(lake, "r1", tmp_path / "ckpt")
        with pytest.raises(RunLocked) as refused:
            acquire_run_lock(lake, "r1", tmp_path / "ckpt")
        assert str(refused.value) == (f"run r1 is already being run by pid {holder.pid} on host "
                                      f"{socket.gethostname()} (lock file {path})")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    acquire_run_lock(lake, "r1", tmp_path / "ckpt").release()  # the holder's exit gave it back


def test_the_lock_lives_in_the_run_folder_locally_and_in_the_checkpoint_folder_on_s3(tmp_path):
    local = Lake.open(StoreConfig(uri=str(tmp_path / "lake")))
    assert lock_path(local, "r1", tmp_path / "ckpt") == tmp_path / "lake" / "runs" / "r1" / "run.lock"
    s3 = Lake.open(StoreConfig(uri="s3://bucket/lake", endpoint_url="http://127.0.0.1:9"))
    assert lock_path(s3, "r1", tmp_path / "ckpt" / "r1") == tmp_path / "ckpt" / "r1" / "run.lock"


@pytest.fixture
def run_cfg(tmp_path):
    """tiny-cpu in tmp_path from a given policy: opening a run records (and so builds) its start
    policy, and the default one is the SFT warm-up, minutes in the repo's runs/sft."""
    policy = build_tiny_policy(tmp_path / "policy")
    return lambda *more: load_config("tiny-cpu", [f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt",
                                                  f"model.policy={policy}", *more])


def _session(cfg, run_id: str = "r1") -> RunSession:
    """A RunSession holding only what _open_run and close use: the real __init__ also loads the
    prompts and inspects the policy, which opening a run does not need."""
    session = object.__new__(RunSession)
    session.spec, session.cfg, session.run_id = RunSpec(run_id), cfg, run_id
    session.lake = Lake.open(cfg.store)
    session._engine = session._verifier = session._trainer = None
    session._open_run()
    return session


def test_two_sessions_of_one_run_cannot_both_open_it(run_cfg):
    first = _session(run_cfg())
    with pytest.raises(RunLocked, match=rf"run r1 is already being run by pid {os.getpid()} on host"):
        _session(run_cfg())
    _session(run_cfg(), "r2").close()  # other runs are not affected
    first.close()
    _session(run_cfg()).close()  # close() gave the run back


def test_a_refused_open_does_not_keep_the_lock(run_cfg):
    _session(run_cfg()).close()
    with pytest.raises(ConfigMismatch):
        _session(run_cfg("loss.kl_coef=0.5"))
    _session(run_cfg()).close()


def test_a_resume_with_changed_prompts_is_refused_naming_file_and_hashes(tmp_path, run_cfg):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"question": "1+1", "gold_answer": "2"}\n')
    cfg = run_cfg(f"data.prompts={prompts}")
    _session(cfg).close()
    started = Lake.open(cfg.store).run("r1").prompts_hash
    assert started and started.startswith("sha256:")
    prompts.write_text('{"question": "1+2", "gold_answer": "3"}\n')
    with pytest.raises(PromptsMismatch) as refused:
        _session(cfg)
    message = str(refused.value)
    assert str(prompts) in message and started in message and "sha256:" in message.replace(started, "")
    prompts.write_text('{"question": "1+1", "gold_answer": "2"}\n')
    _session(cfg).close()  # the original file resumes


def test_resume_of_an_unknown_run_is_a_clear_error_exit_2(tmp_path, capsys, monkeypatch):
    import flows.cli as cli

    started = []
    monkeypatch.setattr(cli, "_cmd_train", lambda args: started.append(args.run_id) or 0)
    store = f"store.uri={tmp_path}/lake"
    assert cli.main(["resume", "--set", store, "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run' in lake" in err and f"{tmp_path}/lake" in err and started == []
    Lake.open(StoreConfig(uri=f"{tmp_path}/lake")).open_run("known", "h")
    assert cli.main(["resume", "--set", store, "known"]) == 0 and started == ["known"]
