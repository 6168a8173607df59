"""DeepSpeed's CPU op is compiled into the environment (``make venv``), not in a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oreal_core.train import native_ops


def test_extensions_go_to_the_environment_unless_the_user_chose_a_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    native_ops.use_environment_extensions()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(Path(sys.prefix) / "torch_extensions")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    native_ops.use_environment_extensions()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path)


def test_a_read_only_environment_keeps_torchs_folder(monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setattr(native_ops.os, "access", lambda path, mode: False)
    native_ops.use_environment_extensions()
    assert "TORCH_EXTENSIONS_DIR" not in os.environ


@pytest.mark.skipif(native_ops.environment_extensions_dir() is None, reason="environment not writable")
def test_the_op_is_built_before_any_run():
    """`make venv` compiled it: loading it here links the built library (seconds, no compiler)."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_EXTENSIONS_DIR"}
    done = subprocess.run([sys.executable, "-m", "oreal_core.train.native_ops"], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    assert "ready in " + str(native_ops.environment_extensions_dir()) in done.stdout
    built = native_ops.environment_extensions_dir() / "deepspeed_shm_comm" / "deepspeed_shm_comm.so"
    assert built.is_file()
