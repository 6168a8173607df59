"""`make demo` end to end on a short schedule: the gain, summary.json, and what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from flows.demo import QUERIES
from oreal_core.config import load_config
from oreal_core.store.query import run_query

pytestmark = pytest.mark.slow


def test_demo_reports_the_gain_and_writes_a_matching_summary(tmp_path, sft_cache_dir, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # the report goes to ./reports/<run id>
    overrides = ("rollout.engine=hf", "run.total_steps=2", "run.eval_every=1", "data.prompts_per_step=8",
                 "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64", "eval.limit=16",
                 "eval.max_new_tokens=64", f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt",
                 f"sft.cache_dir={sft_cache_dir}")
    assert main(["demo", *(arg for o in overrides for arg in ("--set", o))]) == 0
    (report,) = Path("reports").iterdir()
    summary = json.loads((report / "summary.json").read_text())

    by_version = {int(v): p for v, p in summary["pass1_by_policy_version"].items()}  # JSON keys are text
    assert sorted(by_version) == [0, 1, 2] and summary["eval_problems"] == 16
    assert (summary["start_pass1"], summary["end_pass1"]) == (by_version[0], by_version[2])
    assert summary["gain_points"] == round(100 * (by_version[2] - by_version[0]), 1)
    assert set(summary["stage_s"]) == {"rollout", "verify", "score", "train"}
    assert all(seconds > 0 for seconds in summary["stage_s"].values()) and summary["eval_s"] > 0
    parts = sum(summary["stage_s"].values()) + summary["eval_s"] + summary["overhead_s"]
    assert parts == pytest.approx(summary["wall_s"], abs=0.2) and 0 < summary["overhead_share"] < 1

    assert summary["report"] == str(report) and report.name == summary["run_id"]
    assert (report / "summary.md").is_file() and list(report.glob("*.png"))

    # The terminal: the status, the results and the summary; engines, libraries and Prefect's
    # per-task lines are in the run's log file.
    out = capfd.readouterr().out
    log = Path(tmp_path / "ckpt" / summary["run_id"] / "oreal.log").read_text()
    assert "Finished in state Completed()" in log and "Finished in state" not in out
    assert [line.split(" [")[0] for line in out.splitlines() if line.startswith("step ")] == ["step 1/2", "step 2/2"]
    assert len(out.splitlines()) < 30, out
    assert f"({summary['gain_points']:+.1f} points)" in out and summary["lake"] in out
    assert "prefect server start" in out
    cfg = load_config("demo-cpu", overrides)
    for sql in QUERIES:  # the three suggested queries run on the lake the demo wrote
        assert sql in out
        rows = json.loads(run_query(cfg, sql, "json"))
        assert rows, sql
