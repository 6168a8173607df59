"""Across checkpoints: flipped problems, accuracy per step, the best step (lake + DuckDB)."""

from __future__ import annotations

import pytest

from oreal_core.config import StoreConfig
from oreal_core.eval.history import accuracy_by_checkpoint, best_checkpoint, flipped_problems
from oreal_core.eval.metrics import summarise_bench
from oreal_core.store import Lake, RunNotFound
from oreal_core.store.records import EvalRecord


def _record(step: int, problem: str, sample: int, correct: bool, bench: str = "math500") -> EvalRecord:
    return EvalRecord(checkpoint=f"ckpt/step={step}", bench=bench, problem_id=problem, sample_idx=sample,
                      response=f"... \\boxed{{{'4' if correct else '5'}}}<|im_end|>", num_tokens=10 + sample,
                      finish_reason="stop", outcome="correct" if correct else "incorrect",
                      extracted_answer="4" if correct else "5", reward=1.0 if correct else 0.0)


# problem -> correct flags of its two samples, at step 20 and step 40
STEP_20 = {"p0": (True, True), "p1": (False, False), "p2": (True, False), "p3": (False, True)}
STEP_40 = {"p0": (False, False), "p1": (True, True), "p2": (True, True), "p3": (False, False)}


@pytest.fixture
def store(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    lake = Lake.open(cfg)
    lake.open_run("run", "hash")
    for step, table in ((20, STEP_20), (40, STEP_40)):
        records = [_record(step, p, i, ok) for p, flags in table.items() for i, ok in enumerate(flags)]
        records.append(_record(step, "g0", 0, step == 40, bench="gsm8k"))
        records.append(_record(step, "g0", 1, step == 40, bench="gsm8k"))
        lake.write("run", step, "eval", records)
    return cfg


def test_flipped_problems_between_two_steps(store):
    flips = flipped_problems(store, "run", 20, 40).to_pylist()
    # solved = at least half the samples correct: p0 lost, p1 gained, g0 gained; p2 stays, p3 lost
    assert [(f["bench"], f["problem_id"], f["flip"]) for f in flips] == [
        ("gsm8k", "g0", "gained"), ("math500", "p1", "gained"), ("math500", "p0", "lost"), ("math500", "p3", "lost")]
    p0 = next(f for f in flips if f["problem_id"] == "p0")
    assert (p0["pass1_a"], p0["pass1_b"], p0["answer_a"], p0["answer_b"]) == (1.0, 0.0, "4", "5")
    assert flipped_problems(store, "run", 20, 20).num_rows == 0


def test_accuracy_per_checkpoint_matches_the_estimator(store):
    rows = accuracy_by_checkpoint(store, "run").to_pylist()
    assert [(r["bench"], r["step"]) for r in rows] == [("gsm8k", 20), ("gsm8k", 40), ("math500", 20), ("math500", 40)]
    for step, table in ((20, STEP_20), (40, STEP_40)):
        records = [_record(step, p, i, ok) for p, flags in table.items() for i, ok in enumerate(flags)]
        expected = summarise_bench(records, bench="math500", checkpoint="", step=step, k=1, metadata={},
                                   breakdown_keys=())
        row = next(r for r in rows if r["bench"] == "math500" and r["step"] == step)
        assert row["pass1"] == pytest.approx(expected.pass1.value) and row["problems"] == 4
        assert row["checkpoint"] == f"ckpt/step={step}"


def test_best_checkpoint_is_not_always_the_last(store):
    best = best_checkpoint(store, "run", "math500")
    assert (best.step, best.pass1, best.checkpoint) == (20, 0.5, "ckpt/step=20")  # tie at 0.5: earliest
    assert best_checkpoint(store, "run", "gsm8k").step == 40
    assert best_checkpoint(store, "run", "aime24") is None
    with pytest.raises(RunNotFound, match="'other'"):
        best_checkpoint(store, "other", "math500")
