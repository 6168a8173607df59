"""`oreal report RUN_ID`: PNGs and a markdown summary computed from the lake."""

from __future__ import annotations

import json

import pytest

from oreal_core.config import StoreConfig
from oreal_core.store import Lake, RunNotFound
from oreal_core.store.query import run_query
from oreal_core.store.report import write_report
from tests.store.conftest import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = ["accuracy_reward.png", "response_length.png", "selection.png", "judge_disagreement.png",
             "token_rm_heatmap.png", "metrics.png"]


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


def test_report_has_every_plot_and_the_per_step_numbers(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    made = write_run(Lake.open(cfg), "r1", steps=3, judge=True)
    out = write_report(cfg, "r1", tmp_path / "report", token_text=lambda ids: [str(i) for i in ids])
    for name in ALL_PLOTS:
        assert _is_png(out / name), name
    summary = (out / "summary.md").read_text()
    assert "# Run `r1`" in summary and "cfg-hash-1" in summary
    for name in ALL_PLOTS:
        assert f"]({name})" in summary
    for step, rec in enumerate(made):
        accuracy = round(sum(v.correct for v in rec.verdicts) / len(rec.verdicts), 3)
        kept_pos = sum(r.kept and r.is_positive for r in rec.scored)
        assert f"| {step} | 16 | {accuracy} |" in summary
        assert f"| {kept_pos} | " in summary


def test_report_skips_plots_without_data_and_says_why(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    write_run(Lake.open(cfg), "r1", steps=2, judge=False)
    out = write_report(cfg, "r1", tmp_path / "report")
    assert not (out / "judge_disagreement.png").exists()
    assert "_skipped: the judge was never consulted_" in (out / "summary.md").read_text()
    assert _is_png(out / "accuracy_reward.png")


def test_report_of_a_run_with_only_a_manifest(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    Lake.open(cfg).open_run("fresh", "h")
    out = write_report(cfg, "fresh", tmp_path / "report")
    summary = (out / "summary.md").read_text()
    assert "_no per-step data yet_" in summary and "no verdicts for this run" in summary
    assert "_environment: not recorded" in summary


def test_report_and_runs_view_show_the_environment_the_run_started_in(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    env = {"threads": {"torch": 2, "OMP_NUM_THREADS": None}, "hardware": {"cpu": "Xeon", "gpus": []}}
    Lake.open(cfg).open_run("r", "h", environment=env)
    summary = (write_report(cfg, "r", tmp_path / "report") / "summary.md").read_text()
    assert "## Environment at the start\n\n- hardware: cpu `Xeon`, gpus `[]`\n" \
           "- threads: OMP_NUM_THREADS `None`, torch `2`\n" in summary  # the manifest's keys are sorted
    rows = json.loads(run_query(cfg, "SELECT json_extract_string(environment, '$.threads.torch') AS threads, "
                                     "json_extract_string(environment, '$.hardware.cpu') AS cpu FROM runs", "json"))
    assert rows == [{"threads": "2", "cpu": "Xeon"}]


def test_unknown_or_bad_run_id(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    write_run(Lake.open(cfg), "r1", steps=1)
    with pytest.raises(RunNotFound, match="'r2'.*r1"):
        write_report(cfg, "r2", tmp_path / "report")
    with pytest.raises(ValueError, match="run id"):
        write_report(cfg, "../r1", tmp_path / "report")
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_report_over_s3(store_cfg, lake, tmp_path):
    write_run(lake, "r1", steps=2, judge=True)
    out = write_report(store_cfg, "r1", tmp_path / "report")
    assert all(_is_png(out / name) for name in ALL_PLOTS)


def test_report_and_query_take_the_whole_config(tmp_path):
    from oreal_core.config import load_config
    from oreal_core.store.query import run_query

    cfg = load_config(None, [f"store.uri={tmp_path / 'lake'}"])
    write_run(Lake.open(cfg.store), "r1", steps=1)
    assert (write_report(cfg, "r1", tmp_path / "report") / "summary.md").is_file()
    assert run_query(cfg, "SELECT count(*) AS n FROM samples", "csv") == "n\n16\n"
