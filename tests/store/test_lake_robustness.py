"""The lake survives what a crash or a user leaves under runs/, commits durably, and records
the prompt set a run started with."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from oreal_core.config import StoreConfig
from oreal_core.eval.history import best_checkpoint
from oreal_core.store import EvalRecord, Lake, PromptsMismatch, layout
from oreal_core.store.manifest import content_sha256
from oreal_core.store.query import run_query
from oreal_core.store.report import write_report
from tests.store.conftest import write_run


def _leave_debris(lake: Lake) -> list[str]:
    """What a kill inside open_run, a desktop's trash and a corrupt write leave under runs/;
    returns the names a warning must mention."""
    lake._put(f"{layout.RUNS_DIR}/killed/{layout.RUN_CONFIG}", b"run: {}\n")  # config.yaml, no run.json
    lake._put(f"{layout.RUNS_DIR}/.Trash-0/files/x", b"junk")
    lake._put(f"{layout.RUNS_DIR}/corrupt/{layout.RUN_MANIFEST}", b"{not json")
    return ["killed", ".Trash-0", "corrupt"]


def _write_eval(lake: Lake, run_id: str) -> None:
    lake.write(run_id, 1, "eval", [EvalRecord("ckpt/step=000000", "math500", f"q{i}", 0, "x", 3, "stop",
                                              "correct" if i % 2 else "incorrect", str(i), 1.0) for i in range(4)])


def test_bad_entries_under_runs_are_skipped_with_a_warning(store_cfg, lake, caplog, tmp_path):
    write_run(lake, "r1", steps=2)
    _write_eval(lake, "r1")
    names = _leave_debris(lake)
    if not lake.location.is_s3:  # a symlink loop: runs/loop/loop/... is runs/ again
        os.symlink(".", Path(lake.location.root) / layout.RUNS_DIR / "loop")
        names.append("loop")
    with caplog.at_level(logging.WARNING, logger="oreal_core.store.lake"):
        out = json.loads(run_query(store_cfg, "SELECT run_id, count(*) AS n FROM samples GROUP BY ALL", "json"))
        runs = json.loads(run_query(store_cfg, "SELECT run_id FROM runs", "json"))
        report = write_report(store_cfg, "r1", tmp_path / "report")
        best = best_checkpoint(store_cfg, "r1", "math500")
    assert out == [{"run_id": "r1", "n": 32}] and runs == [{"run_id": "r1"}]
    assert (report / "summary.md").is_file()
    assert best is not None and best.step == 1
    for name in names:
        assert f"skipping {lake.location.uri}/runs/{name}" in caplog.text, name
    assert "no run.json" in caplog.text and "corrupt manifest" in caplog.text
    assert lake.runs() == ["r1"]


def test_links_inside_a_run_are_not_followed_past_the_layout(tmp_path):
    lake = Lake.open(StoreConfig(uri=str(tmp_path / "lake")))
    write_run(lake, "r1", steps=1)
    for name in ("a", "b", "step=9"):  # two links up: a recursive listing would branch 2^40 ways
        os.symlink("../..", Path(lake.location.root) / "runs" / "r1" / name)
    assert len(lake.committed()) == 4


def test_a_run_killed_in_open_run_can_be_opened_again(lake):
    lake._put(f"{layout.RUNS_DIR}/r1/{layout.RUN_CONFIG}", b"run: {}\n")
    lake.open_run("r1", "h")
    assert lake.runs() == ["r1"]


# ---------------------------------------------------------------------- durable commits

def test_local_commit_fsyncs_data_and_folder_before_the_rename(tmp_path, monkeypatch):
    lake = Lake.open(StoreConfig(uri=str(tmp_path / "lake")))
    lake.open_run("r1", "h")
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", src, dst)), real_replace(src, dst))[1])
    write_run(lake, "r2", steps=1)
    renames = [(i, e) for i, e in enumerate(events) if e[0] == "replace"]
    assert any(e[2].endswith("samples.manifest.json") for _, e in renames)
    for index, (_, src, dst) in renames:
        synced_before = [e[1] for e in events[:index] if e[0] == "fsync"]
        assert src in synced_before and os.path.dirname(src) in synced_before, src  # the bytes and their name
        assert ("fsync", os.path.dirname(dst)) in events[index + 1:], dst  # the commit's new name


# ---------------------------------------------------------------------- prompt set hash

def test_run_manifest_records_the_prompt_hash_and_refuses_another(lake):
    lake.open_run("r1", "h", prompts_hash="sha256:aaa")
    assert lake.run("r1").prompts_hash == "sha256:aaa"
    lake.open_run("r1", "h", prompts_hash="sha256:aaa")  # same prompts: resumes
    with pytest.raises(PromptsMismatch, match="started with prompt set sha256:aaa and cannot resume with sha256:bbb"):
        lake.open_run("r1", "h", prompts_hash="sha256:bbb")


def test_a_run_from_before_prompt_hashes_resumes_with_a_warning(lake, caplog):
    legacy = {"run_id": "old", "config_hash": "h", "code_version": "0.1.0", "created_at": "2025-01-01T00:00:00.000+00:00",
              "format": "oreal-lake-run/1"}
    lake._put(layout.run_manifest_key("old"), json.dumps(legacy).encode())
    with caplog.at_level(logging.WARNING, logger="oreal_core.store.lake"):
        manifest = lake.open_run("old", "h", version="0.1.0", prompts_hash="sha256:new")
    assert manifest.prompts_hash is None and "records no prompt set hash" in caplog.text


def test_content_hash_of_a_file_and_of_a_dataset_folder(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"question": "1+1", "gold_answer": "2"}\n')
    first = content_sha256(prompts)
    assert first.startswith("sha256:") and content_sha256(prompts) == first
    prompts.write_text('{"question": "1+2", "gold_answer": "3"}\n')
    assert content_sha256(prompts) != first
    folder = tmp_path / "ds"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "data-00000.arrow").write_bytes(b"rows")
    (folder / "dataset_dict.json").write_text("{}")
    before = content_sha256(folder)
    (folder / "train" / "data-00000.arrow").write_bytes(b"other rows")
    assert content_sha256(folder) != before
    (folder / "train" / "data-00000.arrow").write_bytes(b"rows")
    assert content_sha256(folder) == before
    (folder / "train" / "data-00000.arrow").rename(folder / "train" / "data-00001.arrow")
    assert content_sha256(folder) != before
