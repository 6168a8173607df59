"""Schemas, record conversion and the key layout (pure, no filesystem)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from oreal_core.store import (
    TABLES,
    EvalRecord,
    SamplingParams,
    SchemaError,
    eval_table,
    metrics_table,
    samples_table,
    scored_rows,
    scored_table,
    verdicts_table,
)
from oreal_core.store.layout import check_run_id, data_key, parse_manifest_key
from oreal_core.store.schemas import conform
from oreal_core.types import FinishReason, Sample, ScoredBatch, ScoredSample, StepMetrics
from tests.store.conftest import make_step


def test_every_table_is_versioned_documented_and_has_no_step_column():
    assert set(TABLES) == {"samples", "verdicts", "scored", "metrics", "eval"}
    for spec in TABLES.values():
        assert spec.version >= 1
        assert "step" not in spec.schema.names  # the Hive partition key lives only in the path
        assert spec.schema.names[0] == "run_id"
        assert all(doc for _, _, doc in spec.columns()), spec.name


def test_samples_keep_token_lists_as_list_columns():
    rec = make_step(0)
    table = samples_table("r", rec.samples, rec.prompts, SamplingParams(0.7, 0.95, 64, 3))
    assert table.schema.field("token_ids").type == pa.list_(pa.int32())
    assert table.schema.field("logprobs").type == pa.list_(pa.float32())
    row = table.slice(0, 1).to_pylist()[0]
    first = rec.samples[0]
    assert row["token_ids"] == list(first.token_ids)
    assert row["num_tokens"] == len(first.token_ids)
    assert row["prompt"] == rec.prompts[first.prompt_id].text
    assert (row["max_new_tokens"], row["seed"], row["finish_reason"]) == (64, 3, str(first.finish_reason))


def test_samples_refuse_inconsistent_input():
    rec = make_step(0)
    with pytest.raises(SchemaError, match="prompts not given"):
        samples_table("r", rec.samples, {}, SamplingParams(1, 1, 8))
    broken = Sample("p0", 0, "x", (), (1, 2), (-0.1,), FinishReason.STOP)
    with pytest.raises(SchemaError, match="2 tokens but 1 logprobs"):
        samples_table("r", [broken], rec.prompts, SamplingParams(1, 1, 8))
    with pytest.raises(SchemaError, match="latencies"):
        samples_table("r", rec.samples, rec.prompts, SamplingParams(1, 1, 8), gen_latency_s=[0.1])


def test_verdicts_keep_the_rule_outcome_and_judge_reply():
    rec = make_step(0, judge=True)
    table = verdicts_table("r", rec.samples, rec.verdicts)
    judged = [r for r in table.to_pylist() if r["rule_outcome"] is not None]
    assert judged and all(r["source"] == "judge" and r["judge_reply"] for r in judged)
    assert table.column("correct").to_pylist() == [v.correct for v in rec.verdicts]
    with pytest.raises(SchemaError, match="verdicts for"):
        verdicts_table("r", rec.samples, rec.verdicts[:-1])


def test_scored_rows_mark_kept_and_polarity_from_the_batch():
    rec = make_step(0)
    s0, s1, s2 = rec.samples[:3]
    batch = ScoredBatch(0, (ScoredSample(s0.prompt_id, s0.sample_idx, (), s0.token_ids, 1.0, True),
                            ScoredSample(s2.prompt_id, s2.sample_idx, (), s2.token_ids, -1.0, False)))
    rows = scored_rows([s0, s1, s2], [1.0, -1.0, -1.0], [0.6, -0.2, -0.4], batch)
    assert [(r.kept, r.is_positive) for r in rows] == [(True, True), (False, False), (True, False)]
    table = scored_table("r", rows)
    assert table.column("advantage").to_pylist() == pytest.approx([0.6, -0.2, -0.4])
    assert table.column("token_weights").to_pylist() == [[], [], []]


def test_metrics_are_long_format_and_one_step_per_artefact():
    table = metrics_table("r", [StepMetrics.of(2, {"kl": 0.5, "loss": 1.0})])
    assert table.to_pylist() == [{"run_id": "r", "name": "kl", "value": 0.5}, {"run_id": "r", "name": "loss", "value": 1.0}]
    with pytest.raises(SchemaError, match="several steps"):
        metrics_table("r", [StepMetrics.of(1, {}), StepMetrics.of(2, {})])


def test_eval_records_convert():
    rec = EvalRecord("ckpt-10", "math500", "q1", 0, "\\boxed{2}", 5, "stop", "correct", "2", 1.0)
    table = eval_table("r", [rec])
    assert table.to_pylist()[0]["bench"] == "math500"
    assert table.schema.equals(TABLES["eval"].schema)


def test_conform_names_what_is_wrong():
    good = metrics_table("r", [StepMetrics.of(0, {"kl": 1.0})])
    with pytest.raises(SchemaError, match=r"missing columns \['value'\], unexpected columns \['val'\]"):
        conform("metrics", good.rename_columns(["run_id", "name", "val"]))
    with pytest.raises(SchemaError, match="cannot cast"):
        conform("metrics", good.set_column(2, "value", pa.array(["high"])))
    with pytest.raises(SchemaError, match="'name' has nulls"):
        conform("metrics", good.set_column(1, "name", pa.array([None], pa.string())))
    reordered = good.select(["value", "name", "run_id"]).cast(pa.schema([("value", pa.float32()), ("name", pa.string()), ("run_id", pa.string())]))
    assert conform("metrics", reordered).schema.names == ["run_id", "name", "value"]


def test_layout_keys_and_parsing():
    assert data_key("run-1", 12, "samples") == "runs/run-1/step=12/samples.parquet"
    assert parse_manifest_key("runs/run-1/step=12/samples.manifest.json") == ("run-1", 12, "samples")
    for other in ("runs/run-1/step=12/samples.parquet", "runs/run-1/step=012/x.manifest.json",
                  "_staging/abc/samples.manifest.json", "runs/run-1/x/step=1/s.manifest.json"):
        assert parse_manifest_key(other) is None
    assert check_run_id("2026-11-22_tiny.cpu") == "2026-11-22_tiny.cpu"


def test_sampling_params_from_the_config_sections():
    from oreal_core.config import OrealConfig

    cfg = OrealConfig()
    rollout = SamplingParams.of(cfg.rollout)
    assert (rollout.temperature, rollout.top_p, rollout.max_new_tokens, rollout.seed) == (
        cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens, cfg.rollout.seed)
    assert SamplingParams.of(cfg.eval).seed is None
