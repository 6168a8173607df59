"""`make demo` end to end on a short schedule: the gain, summary.json, and what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.demo import QUERIES, run_demo
from oreal_core.config import load_config
from oreal_core.store.query import run_query

pytestmark = pytest.mark.slow


def test_demo_reports_the_gain_and_writes_a_matching_summary(tmp_path, sft_cache_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the report goes to ./reports/<run id>
    overrides = ("rollout.engine=hf", "run.total_steps=2", "run.eval_every=1", "data.prompts_per_step=8",
                 "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64", "eval.limit=16",
                 "eval.max_new_tokens=64", f"store.uri={tmp_path}/lake", f"train.checkpoint_dir={tmp_path}/ckpt",
                 f"sft.cache_dir={sft_cache_dir}")
    summary = run_demo("demo-cpu", overrides)

    by_version = summary["pass1_by_policy_version"]
    assert sorted(by_version) == [0, 1, 2] and summary["eval_problems"] == 16
    assert (summary["start_pass1"], summary["end_pass1"]) == (by_version[0], by_version[2])
    assert summary["gain_points"] == round(100 * (by_version[2] - by_version[0]), 1)
    assert set(summary["stage_s"]) == {"rollout", "verify", "score", "train"}
    assert all(seconds > 0 for seconds in summary["stage_s"].values()) and summary["eval_s"] > 0
    parts = sum(summary["stage_s"].values()) + summary["eval_s"] + summary["overhead_s"]
    assert parts == pytest.approx(summary["wall_s"], abs=0.2) and 0 < summary["overhead_share"] < 1

    report = Path(summary["report"])
    saved = json.loads((report / "summary.json").read_text())
    assert saved["run_id"] == summary["run_id"] and saved["gain_points"] == summary["gain_points"]
    assert (report / "summary.md").is_file() and list(report.glob("*.png"))

    out = capsys.readouterr().out
    assert f"({summary['gain_points']:+.1f} points)" in out and summary["lake"] in out
    assert "prefect server start" in out
    cfg = load_config("demo-cpu", overrides)
    for sql in QUERIES:  # the three suggested queries run on the lake the demo wrote
        assert sql in out
        rows = json.loads(run_query(cfg, sql, "json"))
        assert rows, sql
