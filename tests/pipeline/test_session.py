"""Opening a run: a resume under other code is refused unless asked for."""

from __future__ import annotations

import pytest

from oreal_core.models.tiny import build_tiny_policy
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.store import CodeVersionMismatch


def test_resume_under_other_code_is_refused_unless_allowed(tmp_path, monkeypatch):
    policy = build_tiny_policy(tmp_path / "policy")  # a given policy: no SFT warm-up to open the run
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt", f"model.policy={policy}")
    RunSession(RunSpec("r", "tiny-cpu", overrides)).close()  # engines open lazily: this only opens the run
    monkeypatch.setattr("oreal_core.store.lake.code_version", lambda: "0.1.0+gdifferent")
    with pytest.raises(CodeVersionMismatch, match=r"would resume under 0.1.0\+gdifferent.*--allow-code-change"):
        RunSession(RunSpec("r", "tiny-cpu", overrides))
    RunSession(RunSpec("r", "tiny-cpu", overrides, allow_code_change=True)).close()
