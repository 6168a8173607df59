"""Opening a run: a resume under other code is refused unless asked for."""

from __future__ import annotations

import pytest

from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.store import CodeVersionMismatch


def test_resume_under_other_code_is_refused_unless_allowed(tmp_path, monkeypatch):
    overrides = (f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt")
    RunSession(RunSpec("r", "tiny-cpu", overrides)).close()  # engines open lazily: this only opens the run
    monkeypatch.setattr("oreal_core.store.lake.code_version", lambda: "0.1.0+gdifferent")
    with pytest.raises(CodeVersionMismatch, match=r"would resume under 0.1.0\+gdifferent.*--allow-code-change"):
        RunSession(RunSpec("r", "tiny-cpu", overrides))
    RunSession(RunSpec("r", "tiny-cpu", overrides, allow_code_change=True)).close()
