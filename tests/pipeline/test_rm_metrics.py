"""rm/ metrics (docs/token-rm.md) through the real stages: SFT policy, HF rollout, rule
verifier, DeepSpeed on CPU, the lake's metrics table."""

from __future__ import annotations

import json
import math

import pytest

from oreal_core.config import SyntheticTaskConfig
from oreal_core.data.tasks import synthetic_splits
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.pipeline.stages import STAGE_TABLES, run_stage

HEALTH = ("rm/bce", "rm/within_pair_accuracy", "rm/auc", "rm/w_pos_mean", "rm/w_pos_std", "rm/w_neg_mean",
          "rm/w_neg_std", "rm/zero_weight_frac")
LOCALISATION = ("rm/loc_responses", "rm/loc_auroc", "rm/loc_hit_frac")


def _session(run_id: str, root, sft_cache_dir, *extra: str) -> RunSession:
    return RunSession(RunSpec(run_id=run_id, overrides=(
        "rollout.engine=hf", "run.total_steps=2", "actor.freeze_steps=1", "data.prompts_per_step=8",
        "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64", f"store.uri={root}/lake",
        f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}", *extra)))


def _metrics(session: RunSession, steps: int) -> list[dict[str, float]]:
    out = []
    for step in range(steps):
        for stage in STAGE_TABLES:
            run_stage(stage, session, step)
        rows = session.lake.read(session.run_id, step, "metrics").to_pylist()
        out.append({r["name"]: r["value"] for r in rows})
    return out


@pytest.mark.slow
def test_synthetic_run_records_rm_health_and_localisation(tmp_path, sft_cache_dir):
    session = _session("rm-synthetic", tmp_path, sft_cache_dir)
    try:
        first, second = _metrics(session, 2)
    finally:
        session.close()
    for m in (first, second):
        for name in HEALTH + LOCALISATION:
            assert name in m and math.isfinite(m[name]), name
        assert m["rm/bce"] == pytest.approx(m["rm_loss"], rel=1e-5)
        for name in ("rm/within_pair_accuracy", "rm/auc", "rm/zero_weight_frac", "rm/loc_auroc", "rm/loc_hit_frac"):
            assert 0.0 <= m[name] <= 1.0, name
        assert 1 <= m["rm/loc_responses"] <= m["kept_samples"] / 2  # the kept negatives with a located error
        assert m["health/nonfinite"] == 0.0
    # step 0: the zero-initialised head scores every token 0: chance, and no drop anywhere
    assert first["rm/within_pair_accuracy"] == first["rm/auc"] == first["rm/loc_auroc"] == 0.5
    assert first["rm/zero_weight_frac"] == 1.0 and first["rm/loc_hit_frac"] == 0.0
    # step 1: the RM has taken one step; its scores are no longer constant
    assert second["rm/zero_weight_frac"] < 1.0


@pytest.mark.slow
def test_other_prompt_sets_get_no_localisation(tmp_path, sft_cache_dir):
    # the same arithmetic questions from a file: the first wrong token is only trusted for the synthetic task
    train, _ = synthetic_splits(SyntheticTaskConfig())
    prompts = tmp_path / "arith.jsonl"
    prompts.write_text("".join(json.dumps({"question": p.question, "gold_answer": p.answer}) + "\n"
                               for p in train[:64]))
    session = _session("rm-file", tmp_path, sft_cache_dir, f"data.prompts={prompts}",
                       "data.balance_by_pass_rate=false")
    try:
        (m,) = _metrics(session, 1)
    finally:
        session.close()
    assert "rm/bce" in m and not any(name in m for name in LOCALISATION)
