"""A cycle's records, its resume rule and the one-cycle-per-lineage lock."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from oreal_core.config import StoreConfig
from oreal_core.data.records import PromptDataError, PromptRecord
from oreal_core.models.shipped import SHIPPED_ROOT
from oreal_core.retrain.cycle import (
    CycleMismatch,
    CyclePlan,
    CycleRecords,
    cycle_id_for,
    lineage_lock,
    resumable,
)
from oreal_core.retrain.prompt_set import choose_prompts
from oreal_core.store import Lake
from oreal_core.store.errors import RunLocked


def plan(number: int = 1, **kw) -> CyclePlan:
    base = dict(cycle_id=cycle_id_for("tiny", number), lineage="tiny", number=number, config="tiny-cpu",
                overrides=("run.total_steps=3",), start_model_id="tiny-v1", start_checkpoint="/m/base",
                reference_checkpoint=None, incoming_uri="/lake/retrain/tiny/incoming",
                incoming=({"name": "a.jsonl", "uri": "/x/a.jsonl", "sha256": "ab" * 32, "rows": 3},),
                started_at="2026-12-03T00:00:00", code_version="0.1.0", new_incoming=("a.jsonl",))
    return CyclePlan(**{**base, **kw})


@pytest.fixture
def records(tmp_path) -> CycleRecords:
    return CycleRecords(Lake.open(StoreConfig(uri=str(tmp_path / "lake"))), "tiny")


def test_a_cycle_without_a_decision_is_resumed_and_one_with_a_decision_is_not(records):
    assert records.unfinished() is None and records.next_number() == 1
    records.write_plan(plan(1))
    assert records.plan("tiny-c0001") == plan(1)  # round trip, tuples included
    assert records.unfinished() == plan(1)
    records.write("tiny-c0001", "decision", {"verdict": "rejected"})
    assert records.unfinished() is None and records.next_number() == 2
    records.write_plan(plan(2, incoming=()))
    assert records.cycles() == ["tiny-c0001", "tiny-c0002"]
    assert records.files_seen() == {"ab" * 32}


def test_an_unfinished_cycle_resumes_only_under_its_own_settings():
    started = plan()
    assert resumable(started, "tiny-cpu", ("run.total_steps=3",)) is started
    with pytest.raises(CycleMismatch, match="tiny-c0001 of lineage tiny is unfinished.*--set run.total_steps=3"):
        resumable(started, "tiny-cpu", ("run.total_steps=4",))


def test_the_run_gets_the_start_model_reference_and_rated_prompts():
    overrides = plan(reference_checkpoint="/m/v1").run_overrides(Path("ck/retrain/tiny-c0001/prompts.jsonl"), 0, 5)
    assert overrides == ["run.total_steps=3", "model.policy=/m/base", 'model.reference="/m/v1"',
                         "data.prompts=ck/retrain/tiny-c0001/prompts.jsonl", "data.balance_by_pass_rate=true",
                         "run.eval_every=5"]
    assert "model.reference=null" in plan().run_overrides(Path("p.jsonl"), 10, 5)


def test_one_cycle_per_lineage_at_a_time(records):
    held = lineage_lock(records.lake, "tiny", "unused")
    try:
        with pytest.raises(RunLocked, match="lineage tiny already has a retraining cycle running"):
            lineage_lock(records.lake, "tiny", "unused")
        lineage_lock(records.lake, "other", "unused").release()  # another lineage may run
    finally:
        held.release()
    lineage_lock(records.lake, "tiny", "unused").release()


@pytest.fixture(scope="module")
def tokenizer():
    from oreal_core.rollout.policy_dir import inspect_policy_dir, load_policy_tokenizer

    return load_policy_tokenizer(inspect_policy_dir(sorted(SHIPPED_ROOT.glob("tiny-*"))[0]))


def test_prompts_are_drawn_by_cycle_and_deduplicated_by_question(tokenizer):
    from oreal_core.config import load_config

    cfg = load_config("tiny-cpu", ["retrain.config_prompts=50"])
    first, _, _ = choose_prompts(cfg, tokenizer, (), 1)
    assert len(first) == 50 and first == choose_prompts(cfg, tokenizer, (), 1)[0]  # seeded
    assert {p.question for p in first} != {p.question for p in choose_prompts(cfg, tokenizer, (), 2)[0]}
    again = PromptRecord(question=f"  {first[0].question} ", gold_answer=first[0].gold_answer, pass_rate=None,
                         source="new.jsonl:1")
    fresh = PromptRecord(question="What is 1000 + 1?", gold_answer="1001", pass_rate=None, source="new.jsonl:2")
    prompts, kept, duplicates = choose_prompts(cfg, tokenizer, (again, fresh, fresh), 1)
    assert (len(prompts), kept, duplicates) == (51, 1, 2)
    with pytest.raises(PromptDataError, match=r"new\.jsonl:1: the question of .* with another gold answer"):
        choose_prompts(cfg, tokenizer, (replace(again, gold_answer="-1"),), 1)
