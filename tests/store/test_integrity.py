"""Every reader of the lake trusts the manifest, not the file (DESIGN.md §10 Integrity):
real damaged files on a real lake are refused by name by Lake.read and skipped, with a
one-line warning, by the views, which go on answering from every other artefact."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from oreal_core.config import StoreConfig
from oreal_core.store import ChecksumMismatch, Lake, layout
from oreal_core.store.query import run_query
from oreal_core.store.report import write_report
from tests.store.conftest import write_run

ROOT = Path(__file__).resolve().parents[2]
ACCURACY = "SELECT step, avg(correct::INT) AS acc FROM verdicts GROUP BY step ORDER BY step"
LINE = "lake: run r1 step 1 table verdicts: runs/r1/step=1/verdicts.parquet does not match its manifest"


def _damage(lake: Lake, step: int, table: str, how: str, at: int | None = None) -> None:
    """Replace a committed file behind the lake's back, its manifest untouched."""
    key = layout.data_key("r1", step, table)
    good = lake._get(key)
    if how == "swap":  # another valid Parquet file of the same table, shape and size
        bad = lake._get(layout.data_key("r1", 2, table))
        assert len(bad) == len(good) and bad != good
    elif how == "truncate":
        bad = good[: len(good) // 2]
    else:  # one flipped bit (in the middle: still a readable Parquet file of the same size)
        flipped = bytearray(good)
        flipped[len(good) // 2 if at is None else at] ^= 0x10
        bad = bytes(flipped)
    lake._put(key, bad)


def _accuracy(cfg: StoreConfig) -> dict[int, float]:
    return {r["step"]: r["acc"] for r in json.loads(run_query(cfg, ACCURACY, "json"))}


@pytest.fixture
def run(store_cfg, lake):
    write_run(lake, "r1", steps=3)
    return store_cfg, lake, _accuracy(store_cfg)


@pytest.mark.parametrize("how, problem", [("swap", "sha256 "), ("truncate", "size "), ("flip", "sha256 ")])
def test_a_damaged_file_is_skipped_by_the_view_and_refused_by_read(run, caplog, how, problem):
    cfg, lake, intact = run
    _damage(lake, 1, "verdicts", how)
    with caplog.at_level(logging.WARNING):
        answer = _accuracy(cfg)
    assert answer == {0: intact[0], 2: intact[2]}  # the other steps, exactly as before
    warnings = [r.getMessage() for r in caplog.records if LINE in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert f"({problem}" in warnings[0] and "results exclude run r1 step 1 of verdicts" in warnings[0]
    with pytest.raises(ChecksumMismatch) as refused:
        lake.read("r1", 1, "verdicts")
    assert str(refused.value).startswith(LINE) and "\n" not in str(refused.value)
    assert lake.read("r1", 0, "verdicts").num_rows == 16


def test_a_bad_file_in_one_table_leaves_queries_over_another_untouched(tmp_path, caplog):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    lake = Lake.open(cfg)
    write_run(lake, "r1", steps=3)
    intact = _accuracy(cfg)
    _damage(lake, 0, "samples", "truncate")  # the first file: the one a view reads to bind its columns
    with caplog.at_level(logging.WARNING):
        assert _accuracy(cfg) == intact
        counts = json.loads(run_query(cfg, "SELECT step, count(*) AS n FROM samples GROUP BY step ORDER BY step", "json"))
    assert counts == [{"step": 1, "n": 16}, {"step": 2, "n": 16}]
    assert "run r1 step 0 table samples: runs/r1/step=0/samples.parquet does not match its manifest" in caplog.text


def test_a_flipped_footer_in_a_table_the_query_does_not_name_breaks_nothing(tmp_path, caplog):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    lake = Lake.open(cfg)
    write_run(lake, "r1", steps=3)
    intact = _accuracy(cfg)
    _damage(lake, 0, "samples", "flip", at=-6)  # the footer length of the file its view binds to
    with caplog.at_level(logging.WARNING):
        assert _accuracy(cfg) == intact
    assert "run r1 step 0 table samples: runs/r1/step=0/samples.parquet does not match its manifest (sha256" \
        in caplog.text


def test_report_and_cli_answer_without_the_damaged_file(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    lake = Lake.open(cfg)
    write_run(lake, "r1", steps=3)
    intact = _accuracy(cfg)
    _damage(lake, 1, "verdicts", "swap")
    summary = (write_report(cfg, "r1", tmp_path / "report") / "summary.md").read_text()
    assert "## Excluded artefacts" in summary and LINE in summary
    assert "| 1 |  |  |  |" in summary  # no verdicts counted for step 1: no accuracy, not a wrong one
    assert f"| 0 | 16 | {round(intact[0], 3)} |" in summary and f"| 2 | 16 | {round(intact[2], 3)} |" in summary
    # the real command in its own process: its logging setup is what prints the warning
    done = subprocess.run([sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main(sys.argv[1:]))",
                           "query", "--set", f"store.uri={cfg.uri}", "--format", "json", ACCURACY],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {r["step"] for r in json.loads(done.stdout)} == {0, 2}
    assert LINE in done.stderr and "Traceback" not in done.stderr


def test_a_corrupt_stage_manifest_is_skipped_by_name(tmp_path, caplog):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    lake = Lake.open(cfg)
    write_run(lake, "r1", steps=3)
    intact = _accuracy(cfg)
    lake._put(layout.manifest_key("r1", 1, "verdicts"), b"{not json")
    with caplog.at_level(logging.WARNING):
        assert _accuracy(cfg) == {0: intact[0], 2: intact[2]}
    assert "runs/r1/step=1/verdicts.manifest.json: corrupt manifest" in caplog.text
