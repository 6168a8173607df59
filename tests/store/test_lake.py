"""Commit, read, resume and refusal semantics, against the local store and real S3."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from oreal_core.store import (
    ArtefactExists,
    ArtefactNotFound,
    ChecksumMismatch,
    CodeVersionMismatch,
    ConfigMismatch,
    InvalidRunId,
    Lake,
    RunNotFound,
    SamplingParams,
    SchemaError,
    layout,
    samples_table,
)
from oreal_core.types import StepMetrics
from tests.store.conftest import make_step, write_run


def _samples(run_id: str = "r1", step: int = 0) -> pa.Table:
    rec = make_step(step)
    return samples_table(run_id, rec.samples, rec.prompts, SamplingParams(1.0, 0.9, 64, 0))


def _raw_put(lake: Lake, relative: str, payload: bytes) -> None:
    """Write bytes behind the Lake's back, as a crashed or foreign writer would."""
    lake._put(relative, payload)


def test_write_read_round_trip_adds_step_from_partition(lake):
    lake.open_run("r1", "h1")
    table = _samples()
    ref = lake.write("r1", 3, "samples", table)
    assert (ref.run_id, ref.step, ref.stage, ref.rows) == ("r1", 3, "samples", table.num_rows)
    assert ref.uri.endswith("runs/r1/step=3/samples.parquet")
    assert ref.checksum.startswith("sha256:")
    back = lake.read("r1", 3, "samples")
    assert back.column("step").to_pylist() == [3] * table.num_rows
    assert back.drop_columns(["step"]).equals(table)
    assert lake.read_ref(ref).equals(back)
    assert lake.artefact("r1", 3, "samples") == ref
    assert lake.committed() == [("r1", 3, "samples")]


def test_step_is_not_a_column_inside_the_file(lake):
    lake.open_run("r1", "h1")
    lake.write("r1", 0, "samples", _samples())
    payload = lake._get(layout.data_key("r1", 0, "samples"))
    names = pa.parquet.read_schema(pa.BufferReader(payload)).names
    assert "step" not in names and "run_id" in names


def test_committed_artefact_is_not_rewritten_unless_asked(lake):
    lake.open_run("r1", "h1")
    first = lake.write("r1", 0, "samples", _samples(step=0))
    with pytest.raises(ArtefactExists, match="already committed"):
        lake.write("r1", 0, "samples", _samples(step=1))
    assert lake.artefact("r1", 0, "samples") == first
    second = lake.write("r1", 0, "samples", _samples(step=1), overwrite=True)
    assert second.checksum != first.checksum
    assert lake.artefact("r1", 0, "samples") == second


def test_data_without_manifest_is_invisible_and_replaced(lake):
    """A writer killed between moving the data and its manifest leaves nothing visible."""
    lake.open_run("r1", "h1")
    _raw_put(lake, layout.data_key("r1", 0, "samples"), b"half-written garbage")
    assert lake.artefact("r1", 0, "samples") is None
    assert lake.committed() == []
    with pytest.raises(ArtefactNotFound, match="no committed 'samples'"):
        lake.read("r1", 0, "samples")
    lake.write("r1", 0, "samples", _samples())  # no overwrite needed: it was never committed
    assert lake.read("r1", 0, "samples").num_rows == 16


def test_staging_is_cleaned_up(lake):
    lake.open_run("r1", "h1")
    lake.write("r1", 0, "samples", _samples())
    leftovers = [i for i in lake._list(layout.STAGING_DIR, recursive=True) if i.type.name == "File" and i.size]
    assert leftovers == []


def test_resume_with_same_config_and_refuse_a_changed_one(lake):
    started = lake.open_run("r1", "hash-a", version="v1")
    assert lake.open_run("r1", "hash-a", version="v1") == started
    with pytest.raises(CodeVersionMismatch, match="started with code v1 and would resume under v2.*--allow-code-change"):
        lake.open_run("r1", "hash-a", version="v2")
    assert lake.open_run("r1", "hash-a", version="v2", allow_code_change=True) == started  # warned, allowed
    with pytest.raises(ConfigMismatch, match="hash-a.*hash-b"):
        lake.open_run("r1", "hash-b")
    assert lake.run("r1").config_hash == "hash-a"
    lake.write("r1", 0, "samples", _samples())
    assert lake.manifest("r1", 0, "samples").config_hash == "hash-a"


def test_the_resolved_config_is_kept_and_named_on_refusal(lake):
    from oreal_core.config import OrealConfig

    cfg = OrealConfig()
    lake.open_run("r1", cfg.hash(), config_text=cfg.to_yaml())
    assert lake._get(f"{layout.run_dir('r1')}/{layout.RUN_CONFIG}").decode() == cfg.to_yaml()
    with pytest.raises(ConfigMismatch, match="config.yaml"):
        lake.open_run("r1", "other")


def test_unknown_run_is_a_clear_error(lake):
    lake.open_run("known", "h")
    with pytest.raises(RunNotFound, match="no run 'ghost'.*known"):
        lake.read("ghost", 0, "samples")
    with pytest.raises(RunNotFound):
        lake.write("ghost", 0, "samples", _samples("ghost"))


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", ".hidden", "_staging", "x=1", "", "a" * 129, "a..b", 7])
def test_run_ids_that_could_escape_the_root_are_refused(lake, bad):
    with pytest.raises(InvalidRunId):
        lake.open_run(bad, "h")
    with pytest.raises(InvalidRunId):
        lake.read(bad, 0, "samples")


def test_bad_step_table_and_rows_are_refused(lake):
    lake.open_run("r1", "h1")
    with pytest.raises(Exception, match="non-negative"):
        lake.write("r1", -1, "samples", _samples())
    with pytest.raises(SchemaError, match="unknown lake table 'rollouts'"):
        lake.write("r1", 0, "rollouts", _samples())
    with pytest.raises(SchemaError, match="other run ids"):
        lake.write("r1", 0, "samples", _samples("r2"))
    with pytest.raises(SchemaError, match="step\\(s\\) \\[5\\] written as step 0"):
        lake.write("r1", 0, "metrics", [StepMetrics.of(5, {"kl": 0.1})])
    with pytest.raises(SchemaError, match="needs context"):
        lake.write("r1", 0, "samples", [StepMetrics.of(0, {})])
    assert lake.committed() == []


def test_corrupted_data_fails_its_checksum(lake):
    lake.open_run("r1", "h1")
    lake.write("r1", 0, "metrics", [StepMetrics.of(0, {"kl": 0.1})])
    payload = lake._get(layout.data_key("r1", 0, "metrics"))
    tampered = pa.parquet.read_table(pa.BufferReader(payload)).to_pylist()
    tampered[0]["value"] = 9.0
    sink = pa.BufferOutputStream()
    pa.parquet.write_table(pa.Table.from_pylist(tampered, schema=pa.parquet.read_schema(pa.BufferReader(payload))), sink)
    _raw_put(lake, layout.data_key("r1", 0, "metrics"), sink.getvalue().to_pybytes())
    with pytest.raises(ChecksumMismatch, match="does not match"):
        lake.read("r1", 0, "metrics")
    assert lake.read("r1", 0, "metrics", verify=False).column("value").to_pylist() == [9.0]


def test_schema_version_mismatch_is_refused(lake):
    lake.open_run("r1", "h1")
    lake.write("r1", 0, "samples", _samples())
    key = layout.manifest_key("r1", 0, "samples")
    doc = json.loads(lake._get(key))
    doc["schema_version"] = 99
    _raw_put(lake, key, json.dumps(doc).encode())
    with pytest.raises(SchemaError, match="schema v99; this code reads v1"):
        lake.read("r1", 0, "samples")


def test_a_whole_run_lists_back(lake):
    write_run(lake, "r1", steps=2)
    write_run(lake, "r2", steps=1)
    assert lake.runs() == ["r1", "r2"]
    assert len(lake.committed("r1")) == 8
    assert {t for _, _, t in lake.committed()} == {"samples", "verdicts", "scored", "metrics"}
