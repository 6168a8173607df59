"""The four stages over a real lake with the real components (HF rollout engine for
speed, the rule verifier's worker processes, DeepSpeed on CPU), without Prefect.

One uninterrupted run is the reference; a second run is "killed" after a stage (its
session dropped, as a dead process would) and resumed in a fresh session, which must
reproduce the reference exactly: same samples, rewards, selection, token weights, losses.
"""

from __future__ import annotations

import pytest

from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.pipeline.stages import STAGE_TABLES, run_stage

STAGES = tuple(STAGE_TABLES)
STEPS = 3


def _spec(run_id: str, root, sft_cache_dir) -> RunSpec:
    return RunSpec(run_id=run_id, overrides=(
        "rollout.engine=hf", f"run.total_steps={STEPS}", "run.checkpoint_every=2", "actor.freeze_steps=1",
        "data.prompts_per_step=8", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64",
        f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}"))


def _run(session: RunSession, steps, stages=STAGES):
    return [run_stage(stage, session, step) for step in steps for stage in stages]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sft_cache_dir):
    session = RunSession(_spec("ref", tmp_path_factory.mktemp("ref"), sft_cache_dir))
    results = _run(session, range(STEPS))
    yield session, results
    session.close()


TIMINGS = ("gen_latency_s",)  # wall-clock columns: the only ones a resumed run may change


def _table(session, step, table):
    data = session.lake.read(session.run_id, step, table)
    rows = data.drop_columns(["run_id", *(c for c in TIMINGS if c in data.column_names)]).to_pylist()
    for row in rows:  # a verdict says whether it came from this process's cache: provenance, not outcome
        if "reason" in row:
            row["reason"] = row["reason"].removesuffix("; cached")
    return rows


@pytest.mark.slow
def test_each_stage_commits_its_artefact(reference):
    session, results = reference
    assert [r.stage for r in results[:4]] == list(STAGES) and not any(r.skipped for r in results)
    samples = _table(session, 0, "samples")
    assert len(samples) == 8 * 4
    assert [s["sample_idx"] for s in samples[:4]] == [0, 1, 2, 3]
    assert all(len(s["token_ids"]) == len(s["logprobs"]) == s["num_tokens"] > 0 for s in samples)
    verdicts = _table(session, 0, "verdicts")
    assert {v["outcome"] for v in verdicts} <= {"correct", "incorrect", "truncated", "unparseable"}
    assert all(v["reward"] in (1.0, -1.0) for v in verdicts)
    scored = _table(session, 0, "scored")
    kept = [s for s in scored if s["kept"]]
    assert len(kept) % 2 == 0 and sum(s["is_positive"] for s in kept) == len(kept) // 2
    assert all(len(s["token_weights"]) == len(samples[i]["token_ids"]) for i, s in enumerate(scored) if s["kept"])
    metrics = {m["name"]: m["value"] for m in _table(session, 0, "metrics")}
    for name in ("accuracy", "loss", "loss_kl", "rm_loss", "kept_samples", "response_tokens_mean"):
        assert name in metrics, name
    assert metrics["train/actor_updated"] == 0.0  # step 0: actor frozen while the RM warms up
    later = {m["name"]: m["value"] for m in _table(session, 2, "metrics")}
    assert later["train/actor_updated"] == 1.0


@pytest.mark.slow
def test_rerun_skips_committed_stages(reference):
    session, _ = reference
    again = _run(session, [1])
    assert all(r.skipped for r in again)


@pytest.mark.slow
@pytest.mark.parametrize("killed_after", [(0, "train"), (1, "verify")])
def test_a_killed_run_resumes_and_reproduces_the_uninterrupted_one(reference, tmp_path, sft_cache_dir,
                                                                   killed_after):
    ref_session, _ = reference
    kill_step, kill_stage = killed_after
    spec = _spec("resumed", tmp_path, sft_cache_dir)
    first = RunSession(spec)
    done = [(step, stage) for step in range(STEPS) for stage in STAGES]
    upto = done.index((kill_step, kill_stage)) + 1
    for step, stage in done[:upto]:
        run_stage(stage, first, step)
    first.close()  # the process dies: engines, trainer, verifier gone; only the lake and checkpoints remain

    resumed = RunSession(spec)
    results = [run_stage(stage, resumed, step) for step, stage in done]
    assert [r.skipped for r in results] == [True] * upto + [False] * (len(done) - upto)
    for step in range(STEPS):
        for table in ("samples", "verdicts", "scored"):
            assert _table(resumed, step, table) == _table(ref_session, step, table), (step, table)
        ours = {m["name"]: m["value"] for m in _table(resumed, step, "metrics")}
        theirs = {m["name"]: m["value"] for m in _table(ref_session, step, "metrics")}
        for name in ("loss", "loss_pos", "loss_neg", "loss_kl", "rm_loss", "accuracy", "actor_grad_norm"):
            assert ours[name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-9), (step, name)
    resumed.close()


def test_changed_config_is_refused_naming_the_change(tmp_path, sft_cache_dir):
    from oreal_core.store import ConfigMismatch

    spec = _spec("cfg", tmp_path, sft_cache_dir)
    RunSession(spec).close()
    changed = RunSpec(spec.run_id, spec.config, spec.overrides + ("loss.kl_coef=0.02",))
    with pytest.raises(ConfigMismatch, match=r"loss.kl_coef: 0.01 -> 0.02"):
        RunSession(changed)


@pytest.mark.slow
def test_verify_grades_against_the_committed_gold_not_a_reread_prompt_file(reference, monkeypatch):
    import dataclasses

    from oreal_core.pipeline.records import samples_from_table
    from oreal_core.pipeline.stages import verify_items

    session, _ = reference
    table = session.lake.read(session.run_id, 0, "samples")
    samples, texts, golds = samples_from_table(table), table["prompt"].to_pylist(), table["gold_answer"].to_pylist()
    drawn = session.step_prompts(0)
    edited = [dataclasses.replace(p, gold_answer="999999") for p in drawn]  # golds edited after the rollout
    monkeypatch.setattr(session, "step_prompts", lambda step: edited)
    assert [i.gold for i in verify_items(session, 0, samples, texts, golds)] == golds
    shifted = [dataclasses.replace(p, text=q.text, question=q.question) for p, q in zip(drawn, drawn[1:] + drawn[:1],
                                                                                        strict=True)]
    monkeypatch.setattr(session, "step_prompts", lambda step: shifted)  # ids moved by one line
    with pytest.raises(ValueError, match=r"prompt '.*' of the committed samples is not in data.prompts as drawn"):
        verify_items(session, 0, samples, texts, golds)
