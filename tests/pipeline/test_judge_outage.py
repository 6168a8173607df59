"""A judge that fails never turns into training signal (issue: judge outages trained as wrong).

The real stages over a real lake (HF rollout engine, rule workers, DeepSpeed on CPU); the
judge is the scripted OpenAI-compatible server, the process boundary we do not own.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from oreal_core.algo.advantages import group_advantages
from oreal_core.pipeline.session import RunSession, RunSpec
from oreal_core.pipeline.stages import run_stage
from oreal_core.verify.verifier import JudgeUnavailable
from tests.verify.scripted_openai import Reply, ScriptedOpenAI

pytestmark = pytest.mark.slow
K = 4


def _spec(run_id: str, root, sft_cache_dir, host: str, *extra: str) -> RunSpec:
    return RunSpec(run_id=run_id, overrides=(
        "rollout.engine=hf", "run.total_steps=2", "data.prompts_per_step=8", f"rollout.samples_per_prompt={K}",
        "rollout.max_new_tokens=64", "actor.freeze_steps=0", "algo.selection=all",
        "verifier.judge.enabled=true", f"verifier.judge.hosts=[{host}]", "verifier.judge_when=always",
        "verifier.judge.request_timeout_s=5", "verifier.judge.max_retries=1", "verifier.judge.backoff_base_s=0.01",
        f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}", *extra))


def _flaky(n: int, body: dict) -> Reply:
    """A verdict for most answers, an unusable reply for about a third (fixed by the request text)."""
    digest = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()[0]
    return Reply(content="maybe later" if digest % 3 == 0 else ("A" if digest % 2 else "B"))


def test_ungraded_samples_get_no_reward_no_advantage_and_are_never_trained(tmp_path, sft_cache_dir):
    with ScriptedOpenAI(_flaky) as judge:
        session = RunSession(_spec("flaky", tmp_path, sft_cache_dir, judge.host, "verifier.max_judge_error_frac=1"))
        try:
            for stage in ("rollout", "verify", "score", "train"):
                run_stage(stage, session, 0)
            verdicts = session.lake.read("flaky", 0, "verdicts").to_pylist()
            scored = session.lake.read("flaky", 0, "scored").to_pylist()
            metrics = {m["name"]: m["value"] for m in session.lake.read("flaky", 0, "metrics").to_pylist()}
        finally:
            session.close()
    ungraded = [i for i, v in enumerate(verdicts) if v["outcome"] == "judge_error"]
    assert ungraded and len(ungraded) < len(verdicts)  # the script fails some requests, not all
    for i in ungraded:
        assert verdicts[i]["reward"] is None and scored[i]["reward"] is None and scored[i]["advantage"] is None
        assert not scored[i]["kept"]
    # Each group's advantages are RLOO over its graded samples alone.
    rewards = torch.tensor([math.nan if v["reward"] is None else v["reward"] for v in verdicts]).view(-1, K)
    expected = group_advantages(rewards, "rloo", ~torch.isnan(rewards)).flatten().tolist()
    for i, row in enumerate(scored):
        if row["advantage"] is not None:
            assert row["advantage"] == pytest.approx(expected[i])
    assert sum(r["kept"] for r in scored) == len(verdicts) - len(ungraded)  # selection=all: every graded one
    assert metrics["kept_samples"] == len(verdicts) - len(ungraded)


def test_a_judge_that_dies_mid_run_fails_the_next_verify_before_anything_is_committed(tmp_path, sft_cache_dir):
    judge = ScriptedOpenAI(lambda n, body: Reply(content="B")).__enter__()
    session = RunSession(_spec("outage", tmp_path, sft_cache_dir, judge.host))
    try:
        for stage in ("rollout", "verify", "score", "train"):
            run_stage(stage, session, 0)
        judge.__exit__(None, None, None)  # the judge goes away between steps
        run_stage("rollout", session, 1)
        with pytest.raises(JudgeUnavailable, match=r"step 1: 100% of the samples sent to the judge got no "
                                                   r"verdict .*nothing was committed or trained"):
            run_stage("verify", session, 1)
        assert session.lake.artefact("outage", 1, "verdicts") is None
        assert session.lake.artefact("outage", 1, "scored") is None
    finally:
        session.close()
