"""From a scored batch to padded micro-batches that fit a token budget.

Shapes: B samples in a micro-batch, L = longest prompt+response in it, T = longest
response. Each sample is one right-padded row of ``input_ids`` (B, L); ``positions``
(B, T) index the hidden state that *predicts* each response token (prompt length - 1 + t),
so log-probs and token-RM scores use the same shift (OREAL_SPEC.md §2, "Scores").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from oreal_core.types import ScoredSample


class BadBatchError(ValueError):
    """A scored sample cannot be trained on; the message names the sample and the field."""


def validate_samples(samples: tuple[ScoredSample, ...], vocab_size: int) -> None:
    """Refuse samples the models cannot score, before any forward pass touches them."""
    for s in samples:
        name = f"sample {s.prompt_id}#{s.sample_idx}"
        if not s.prompt_token_ids:
            raise BadBatchError(f"{name}: prompt_token_ids is empty (nothing predicts the first response token)")
        if not s.token_ids:
            raise BadBatchError(f"{name}: token_ids is empty (no response token to train on)")
        if not math.isfinite(s.advantage):
            raise BadBatchError(f"{name}: advantage is {s.advantage} (must be finite)")
        ids = s.prompt_token_ids + s.token_ids
        if min(ids) < 0 or max(ids) >= vocab_size:
            raise BadBatchError(f"{name}: token id out of range [0, {vocab_size}) (min {min(ids)}, max {max(ids)})")


@dataclass(frozen=True)
class MicroBatch:
    """One forward/backward unit. ``rows`` are the samples' indices in the step's batch."""

    rows: tuple[int, ...]
    input_ids: torch.Tensor  # (B, L) long, right-padded
    attention_mask: torch.Tensor  # (B, L) long
    positions: torch.Tensor  # (B, T) long, the position predicting each response token
    targets: torch.Tensor  # (B, T) long, the response tokens (pad id on padding)
    mask: torch.Tensor  # (B, T) bool, real response tokens (stop token included)
    advantages: torch.Tensor  # (B,) float32
    is_positive: torch.Tensor  # (B,) bool
    rollout_logp: torch.Tensor  # (B, T) float32, the rollout engine's log-probs (0 where unknown)
    rollout_mask: torch.Tensor  # (B, T) bool, tokens whose rollout log-prob is known

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel())

    def describe(self) -> str:
        b, length = self.input_ids.shape
        return f"micro-batch of {b} samples x {length} tokens ({b * length} padded tokens)"

    def to(self, device: torch.device) -> MicroBatch:
        moved = {k: getattr(self, k).to(device) for k in
                 ("input_ids", "attention_mask", "positions", "targets", "mask", "advantages", "is_positive",
                  "rollout_logp", "rollout_mask")}
        return MicroBatch(rows=self.rows, **moved)


def plan_micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Group row indices so each group's padded size (rows x longest) stays within ``budget``.

    Rows are taken longest first so similar lengths share a micro-batch (little padding);
    a row longer than the budget on its own gets a micro-batch to itself.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        # The first row of a group is its longest, so adding row i costs (n + 1) x that length.
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def collate(samples: list[ScoredSample], rows: list[int], pad_id: int) -> MicroBatch:
    picked = [samples[i] for i in rows]
    length = max(len(s.prompt_token_ids) + len(s.token_ids) for s in picked)
    n_resp = max(len(s.token_ids) for s in picked)
    b = len(picked)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attention = torch.zeros((b, length), dtype=torch.long)
    positions = torch.zeros((b, n_resp), dtype=torch.long)
    targets = torch.full((b, n_resp), pad_id, dtype=torch.long)
    mask = torch.zeros((b, n_resp), dtype=torch.bool)
    rollout_logp = torch.zeros((b, n_resp), dtype=torch.float32)
    rollout_mask = torch.zeros((b, n_resp), dtype=torch.bool)
    for row, s in enumerate(picked):
        p, r = len(s.prompt_token_ids), len(s.token_ids)
        input_ids[row, : p + r] = torch.tensor(s.prompt_token_ids + s.token_ids)
        attention[row, : p + r] = 1
        positions[row, :r] = torch.arange(p - 1, p + r - 1)
        targets[row, :r] = torch.tensor(s.token_ids)
        mask[row, :r] = True
        if len(s.rollout_logprobs) == r:  # a batch without them (or a mismatched one) is not compared
            rollout_logp[row, :r] = torch.tensor(s.rollout_logprobs, dtype=torch.float32)
            rollout_mask[row, :r] = True
    return MicroBatch(
        rows=tuple(rows), input_ids=input_ids, attention_mask=attention, positions=positions,
        targets=targets, mask=mask,
        advantages=torch.tensor([s.advantage for s in picked], dtype=torch.float32),
        is_positive=torch.tensor([s.is_positive for s in picked], dtype=torch.bool),
        rollout_logp=rollout_logp, rollout_mask=rollout_mask,
    )


def micro_batches(samples: list[ScoredSample], budget: int, pad_id: int) -> list[MicroBatch]:
    lengths = [len(s.prompt_token_ids) + len(s.token_ids) for s in samples]
    return [collate(samples, rows, pad_id) for rows in plan_micro_batches(lengths, budget)]


def idle_micro_batch(pad_id: int) -> MicroBatch:
    """A one-token micro-batch with no response token: its losses are exactly zero.

    Under data parallelism every rank must run the same number of backward passes (each
    one's gradient reduction is a collective); a rank with fewer micro-batches than the
    busiest rank runs these to keep in step.
    """
    one = torch.full((1, 1), pad_id, dtype=torch.long)
    return MicroBatch(rows=(), input_ids=one, attention_mask=torch.ones_like(one), positions=torch.zeros_like(one),
                      targets=one.clone(), mask=torch.zeros((1, 1), dtype=torch.bool),
                      advantages=torch.zeros(1), is_positive=torch.zeros(1, dtype=torch.bool),
                      rollout_logp=torch.zeros((1, 1)), rollout_mask=torch.zeros((1, 1), dtype=torch.bool))
