"""Trainer vs rollout-engine log-prob mismatch (health/logprob_*): hand-computed sums, then a
real trainer step fed its own log-probs (noise only) and shifted ones (a stale engine)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from oreal_core.config import load_config
from oreal_core.train.batching import collate, micro_batches
from oreal_core.train.step_metrics import StepSums, mismatch_metrics
from oreal_core.train.trainer import Trainer
from oreal_core.types import ScoredBatch, ScoredSample
from tests.train.conftest import toy_batch


def test_mismatch_sums_by_hand():
    samples = [ScoredSample("a", 0, (1, 2), (3, 4, 5), 1.0, True, (-1.0, -2.0, -3.0)),
               ScoredSample("b", 0, (1,), (6, 7), -1.0, False, ()),  # no rollout log-probs: not compared
               ScoredSample("c", 0, (1,), (8,), -1.0, False, (-0.5,))]
    mb = collate(samples, [0, 1, 2], pad_id=0)
    logp = torch.tensor([[-1.0, -2.5, -2.0], [-9.0, -9.0, 0.0], [-0.5, 0.0, 0.0]])
    sums = StepSums()
    sums.add_mismatch(logp, mb)
    m = mismatch_metrics(sums.values, sums.maxima)
    deltas = [0.0, -0.5, 1.0, 0.0]
    ratios = [math.exp(d) for d in deltas]
    mean = sum(ratios) / 4
    assert m["health/logprob_compared_tokens"] == 4
    assert m["health/logprob_abs_delta_mean"] == pytest.approx(1.5 / 4)
    assert m["health/logprob_abs_delta_max"] == pytest.approx(1.0)
    assert m["health/logprob_ratio_mean"] == pytest.approx(mean)
    assert m["health/logprob_ratio_std"] == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in ratios) / 4))


def test_no_rollout_logprobs_no_mismatch_metrics():
    sums = StepSums()
    mb = collate([ScoredSample("a", 0, (1,), (3, 4), 1.0, True)], [0], pad_id=0)
    sums.add_mismatch(torch.zeros(1, 2), mb)
    assert mismatch_metrics(sums.values, sums.maxima) == {}


def _with_logprobs(trainer: Trainer, batch: ScoredBatch, shift: float) -> ScoredBatch:
    """The batch with rollout log-probs = the actor's own log-probs + ``shift``."""
    (mb,) = micro_batches(list(batch.samples), budget=100_000, pad_id=trainer.pad_id)
    with torch.no_grad():
        logp, _ = trainer.actor.engine.module(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    out = []
    for row, i in enumerate(mb.rows):
        s = batch.samples[i]
        out.append((i, replace(s, rollout_logprobs=tuple((logp[row, :len(s.token_ids)] + shift).tolist()))))
    return replace(batch, samples=tuple(s for _, s in sorted(out, key=lambda x: x[0])))


@pytest.mark.slow
def test_trainer_reports_noise_for_its_own_logprobs_and_the_shift_of_stale_ones(policy_dir, tmp_path):
    cfg = load_config("tiny-cpu", ["actor.freeze_steps=2", "run.total_steps=4", "train.micro_batch_tokens=64"])
    trainer = Trainer(cfg, policy_dir, tmp_path)  # actor frozen for steps 0-1: its log-probs do not move
    same = trainer.train_step(_with_logprobs(trainer, toy_batch(0), 0.0)).metrics.as_dict()
    assert same["health/logprob_compared_tokens"] == same["num_tokens"]
    assert same["health/logprob_abs_delta_mean"] < 1e-5 and same["health/logprob_abs_delta_max"] < 1e-4
    assert same["health/logprob_ratio_std"] < 1e-4
    stale = trainer.train_step(_with_logprobs(trainer, toy_batch(1), 0.7)).metrics.as_dict()
    assert stale["health/logprob_abs_delta_mean"] == pytest.approx(0.7, abs=1e-4)
    assert stale["health/logprob_ratio_mean"] == pytest.approx(math.exp(-0.7), rel=1e-4)
