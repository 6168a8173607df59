"""Incoming prompt files: added after a check, read with their hashes, refused as file:line."""

from __future__ import annotations

import json

import pytest

from oreal_core.config import load_config
from oreal_core.data.records import PromptDataError
from oreal_core.retrain.incoming import add_prompt_file, prompt_keys, read_incoming


def _cfg(tmp_path, *extra):
    return load_config("tiny-cpu", [f"store.uri={tmp_path / 'lake'}", *extra])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_added_files_are_read_back_in_arrival_order_with_their_hash(tmp_path):
    cfg = _cfg(tmp_path)
    first = add_prompt_file(cfg, "tiny", _jsonl(tmp_path / "a.jsonl", [{"question": "1+1?", "gold_answer": "2"}]))
    second = add_prompt_file(cfg, "tiny", _jsonl(tmp_path / "b.jsonl", [
        {"question": "2+2?", "gold_answer": "4"}, {"problem": "3+3?", "answer": "6"}]))
    again = add_prompt_file(cfg, "tiny", tmp_path / "a.jsonl")  # same content: not added twice
    assert again == first
    incoming = read_incoming(cfg, "tiny")
    assert [f.sha256 for f in incoming.files] == [first.sha256, second.sha256]
    assert [f.rows for f in incoming.files] == [1, 2]
    assert [r.question for r in incoming.records] == ["1+1?", "2+2?", "3+3?"]
    assert incoming.records[2].source == f"{second.uri}:2"  # the lake copy's line, not a temp file's
    assert read_incoming(cfg, "other").files == ()  # lineages do not share incoming prompts


def test_a_malformed_file_is_refused_with_its_line_and_not_added(tmp_path):
    cfg = _cfg(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "ok?", "gold_answer": "1"}) + "\n{not json\n")
    with pytest.raises(PromptDataError, match=r"bad\.jsonl:2"):
        add_prompt_file(cfg, "tiny", bad)
    assert read_incoming(cfg, "tiny").files == ()
    with pytest.raises(PromptDataError, match="must be .jsonl or .parquet"):
        add_prompt_file(cfg, "tiny", _jsonl(tmp_path / "x.txt", [{"question": "q", "gold_answer": "1"}]))


def test_a_malformed_file_dropped_in_the_folder_is_named_by_uri_and_line(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    _jsonl(folder / "good.jsonl", [{"question": "q1", "gold_answer": "1"}])
    (folder / "bad.jsonl").write_text(json.dumps({"question": "q2"}) + "\n")  # no gold answer
    (folder / ".partial.jsonl").write_text("{")  # hidden: a writer's temporary, never read
    cfg = _cfg(tmp_path, f"retrain.incoming={folder}")
    with pytest.raises(PromptDataError, match=rf"{folder}/bad\.jsonl:1"):
        read_incoming(cfg, "tiny")
    (folder / "bad.jsonl").unlink()
    assert [f.name for f in read_incoming(cfg, "tiny").files] == ["good.jsonl"]


def test_staging_and_hidden_paths_are_not_prompt_files(tmp_path):
    cfg = _cfg(tmp_path)
    add_prompt_file(cfg, "tiny", _jsonl(tmp_path / "a.jsonl", [{"question": "q", "gold_answer": "1"}]))
    from oreal_core.retrain.incoming import incoming_place

    lake, prefix = incoming_place(cfg, "tiny")
    lake.put_document(f"{prefix}/_staging/x.jsonl", b"{")
    assert len(prompt_keys(lake, prefix)) == 1


def test_incoming_files_and_cycle_records_on_s3(s3_server, tmp_path):
    """An s3:// lake holds the incoming files and the cycle's records; an s3:// retrain.incoming
    prefix is read with the store's endpoint."""
    import uuid

    from oreal_core.retrain.cycle import CycleRecords
    from oreal_core.store import Lake
    from tests.retrain.conftest import BUCKET

    lake_uri = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    cfg = load_config("tiny-cpu", [f"store.uri={lake_uri}", f"store.endpoint_url={s3_server}"])
    added = add_prompt_file(cfg, "tiny", _jsonl(tmp_path / "a.jsonl", [{"question": "q", "gold_answer": "1"}]))
    assert added.uri == f"{lake_uri}/retrain/tiny/incoming/{added.name}"
    (read,) = read_incoming(cfg, "tiny").files
    assert (read.uri, read.sha256, read.rows) == (added.uri, added.sha256, 1)
    records = CycleRecords(Lake.open(cfg.store), "tiny")
    records.write("tiny-c0001", "gate", {"promote": True})
    assert records.read("tiny-c0001", "gate") == {"promote": True} and records.read("tiny-c0001", "plan") is None

    drop = f"s3://{BUCKET}/{uuid.uuid4().hex}/drop"
    elsewhere = load_config("tiny-cpu", [f"store.uri={lake_uri}", f"store.endpoint_url={s3_server}",
                                         f"retrain.incoming={drop}"])
    add_prompt_file(elsewhere, "tiny", tmp_path / "a.jsonl")
    (file,) = read_incoming(elsewhere, "tiny").files
    assert file.uri.startswith(f"{drop}/") and file.sha256 == added.sha256
