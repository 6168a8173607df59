"""The four stages of one OREAL iteration (paper Algorithm 1), each a lake artefact:

    rollout  -> samples   K samples per prompt from the current policy (lines 2)
    verify   -> verdicts  outcome reward of each sample (line 3)
    score    -> scored    group advantages over all K, p in {0,1} filter, 1+1 selection,
                          token-RM scores and weights of the kept samples (lines 4-6)
    train    -> metrics   token-RM update and OREAL policy update (lines 7-8)

A stage whose artefact is committed returns it without running (``skipped``), so a
re-run resumes at the first incomplete stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc
import torch

from oreal_core.algo.advantages import group_advantages
from oreal_core.algo.selection import SELECTIONS, group_pass_rates
from oreal_core.data.prompts import SYNTHETIC as SYNTHETIC_PROMPTS
from oreal_core.pipeline import position
from oreal_core.pipeline.health import nonfinite_count, step_health
from oreal_core.pipeline.records import kept_samples, samples_from_table
from oreal_core.pipeline.rm_localisation import localisation_metrics
from oreal_core.pipeline.session import RunSession
from oreal_core.rollout import SamplingSpec
from oreal_core.store import (
    SamplingParams,
    ScoredRow,
    samples_table,
    scored_table,
    verdicts_table,
)
from oreal_core.types import ArtefactRef, Sample, ScoredBatch, ScoredSample, StepMetrics
from oreal_core.verify.verifier import VerifyItem, check_judge_error_rate, verdict_metrics

STAGE_TABLES = {"rollout": "samples", "verify": "verdicts", "score": "scored", "train": "metrics"}


@dataclass(frozen=True)
class StageResult:
    stage: str
    ref: ArtefactRef
    skipped: bool  # the artefact was already committed
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def run_stage(stage: str, session: RunSession, step: int) -> StageResult:
    """Run one stage of ``step`` unless its artefact is already committed."""
    table = STAGE_TABLES[stage]
    position.enter(session.run_id, step, stage)
    existing = session.lake.artefact(session.run_id, step, table)
    if existing is not None:
        return StageResult(stage, existing, skipped=True)
    start = time.perf_counter()
    data, metrics = STAGES[stage](session, step)
    ref = session.lake.write(session.run_id, step, table, data)
    return StageResult(stage, ref, skipped=False, seconds=time.perf_counter() - start, metrics=metrics)


def rollout(session: RunSession, step: int) -> tuple[pa.Table, dict[str, float]]:
    prompts = session.step_prompts(step)
    engine = session.engine_at(step)
    cfg = session.cfg.rollout
    # A fresh seed per step: while the actor is frozen the weights repeat, the samples must not.
    spec = replace(SamplingSpec.from_rollout(cfg), seed=cfg.seed + step)
    result = engine.generate(prompts, spec)
    sampling = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens, spec.seed)
    latency = [result.generate_s] * len(result.samples)
    table = samples_table(session.run_id, result.samples, {p.prompt_id: p for p in prompts}, sampling, latency)
    return table, result.timings()


def verify(session: RunSession, step: int) -> tuple[pa.Table, dict[str, float]]:
    table = session.lake.read(session.run_id, step, "samples")
    samples = samples_from_table(table)
    items = verify_items(session, step, samples, table["prompt"].to_pylist(), table["gold_answer"].to_pylist())
    verdicts = session.verifier.verify(items)
    check_judge_error_rate(verdicts, session.cfg.verifier, f"run {session.run_id} step {step}")
    return verdicts_table(session.run_id, samples, verdicts), verdict_metrics(verdicts)


def verify_items(session: RunSession, step: int, samples: list[Sample], texts: list[str],
                 golds: list[str | None]) -> list[VerifyItem]:
    """Grade against the gold answers committed with the samples, never a re-read prompt file.

    The judge also needs the question, which only the prompt pool holds: a pool prompt is
    used only if its text is the one the samples were drawn from (a prompt file edited
    between a crash and the resume would otherwise grade samples against other questions).
    """
    prompts = {p.prompt_id: p for p in session.step_prompts(step)}
    items = []
    for sample, text, gold in zip(samples, texts, golds, strict=True):
        prompt = prompts.get(sample.prompt_id)
        if gold is None or prompt is None or prompt.text != text:
            raise ValueError(f"run {session.run_id} step {step}: prompt {sample.prompt_id!r} of the committed "
                             f"samples is {'without a gold answer' if gold is None else 'not in data.prompts as drawn'}"
                             f"; was {session.cfg.data.prompts!r} changed since the rollout? Restore it to resume")
        items.append(VerifyItem(sample.response, sample.finish_reason, gold, prompt.question))
    return items


def score(session: RunSession, step: int) -> tuple[pa.Table, dict[str, float]]:
    cfg = session.cfg
    samples = session.lake.read(session.run_id, step, "samples")
    verdicts = session.lake.read(session.run_id, step, "verdicts")
    k = cfg.rollout.samples_per_prompt
    ids = list(zip(samples["prompt_id"].to_pylist(), samples["sample_idx"].to_pylist(), strict=True))
    if ids != list(zip(verdicts["prompt_id"].to_pylist(), verdicts["sample_idx"].to_pylist(), strict=True)):
        raise ValueError(f"run {session.run_id} step {step}: samples and verdicts are not in the same order")
    if len(ids) % k or any(idx != i % k for i, (_, idx) in enumerate(ids)):
        raise ValueError(f"run {session.run_id} step {step}: samples are not groups of K={k} in prompt order")
    # A null reward is a sample nobody graded (verifier.on_judge_error=exclude): it is left
    # out of its group's advantages and is never trained, so a judge outage is not "wrong".
    reward_list = verdicts["reward"].to_pylist()
    graded = torch.tensor([r is not None for r in reward_list]).view(-1, k)
    rewards = torch.tensor([math.nan if r is None else r for r in reward_list], dtype=torch.float32).view(-1, k)
    advantages = group_advantages(rewards, cfg.algo.advantage, graded)
    generator = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + step)
    keep = SELECTIONS[cfg.algo.selection](rewards, generator, graded)

    prompt_tokens, tokens = samples["prompt_token_ids"].to_pylist(), samples["token_ids"].to_pylist()
    flat_adv, flat_keep, flat_rew = advantages.flatten().tolist(), keep.flatten().tolist(), reward_list
    kept = [ScoredSample(pid, idx, tuple(prompt_tokens[i]), tuple(tokens[i]), flat_adv[i], flat_rew[i] > 0)
            for i, (pid, idx) in enumerate(ids) if flat_keep[i]]
    batch = ScoredBatch(step=step, samples=tuple(kept))
    token_rm = {}
    if cfg.token_rm.enabled and kept:
        token_rm = {(r.prompt_id, r.sample_idx): r for r in session.trainer_at(step).score_tokens(batch)}
    rows = []
    for i, (pid, idx) in enumerate(ids):
        rm = token_rm.get((pid, idx))
        rows.append(ScoredRow(pid, idx, flat_rew[i], flat_adv[i] if flat_rew[i] is not None else None, flat_keep[i],
                              flat_keep[i] and flat_rew[i] > 0, tuple(rm.scores) if rm else (),
                              tuple(rm.weights) if rm else ()))
    pass_rate = group_pass_rates(rewards, graded)
    metrics = {"score/prompts": float(rewards.shape[0]), "score/kept_samples": float(len(kept)),
               "score/ungraded_samples": float((~graded).sum()),
               "score/prompts_all_correct": float((pass_rate == 1).sum()),
               "score/prompts_all_wrong": float((pass_rate == 0).sum())}
    return scored_table(session.run_id, rows), metrics


def train(session: RunSession, step: int) -> tuple[list[StepMetrics], dict[str, float]]:
    scored = session.lake.read(session.run_id, step, "scored")
    samples = session.lake.read(session.run_id, step, "samples")
    batch = ScoredBatch(step=step, samples=tuple(kept_samples(scored, samples)))
    trainer = session.trainer_at(step)
    session.free_engine_memory()
    result = trainer.train_step(batch)
    verdicts = session.lake.read(session.run_id, step, "verdicts")
    values = {**result.metrics.as_dict(), **step_summary(samples, verdicts, scored)}
    if session.cfg.data.prompts == SYNTHETIC_PROMPTS:  # the only task whose first wrong token is known
        questions = {p.prompt_id: p.question for p in session.step_prompts(step)}
        values.update(localisation_metrics(batch, result.token_rm, samples, questions, session.tokenizer))
    values.update(step_health(samples, verdicts, values))
    values["train/status_trained"] = float(result.status == "trained")
    values["train/actor_updated"] = float(result.actor_updated)
    values["health/nonfinite"] = nonfinite_count(values, refused=result.status == "refused")
    return [StepMetrics.of(step, values)], values


def step_summary(samples: pa.Table, verdicts: pa.Table, scored: pa.Table) -> dict[str, float]:
    """What a user reads first about a step: accuracy, lengths, truncation, selection."""
    lengths = samples["num_tokens"]
    summary = {
        "accuracy": pc.mean(verdicts["correct"].cast(pa.float64())).as_py(),
        "mean_reward": pc.mean(verdicts["reward"]).as_py(),
        "response_tokens_mean": pc.mean(lengths).as_py(),
        "response_tokens_max": float(pc.max(lengths).as_py()),
        "truncated_frac": pc.mean(pc.equal(samples["finish_reason"], "length").cast(pa.float64())).as_py(),
        "kept_samples": float(pc.sum(scored["kept"].cast(pa.int64())).as_py() or 0),
    }
    # A mean over no values is None (e.g. mean_reward when the judge graded nothing): not a number
    # to record, and not a NaN for the nonfinite alarm either
    return {name: value for name, value in summary.items() if value is not None}


STAGES: dict[str, Callable[[RunSession, int], tuple[object, dict[str, float]]]] = {
    "rollout": rollout,
    "verify": verify,
    "score": score,
    "train": train,
}
