import pytest
import torch

from oreal_core.train.batching import (
    BadBatchError,
    micro_batches,
    plan_micro_batches,
    validate_samples,
)
from oreal_core.types import ScoredSample
from tests.train.conftest import toy_batch


def test_plan_keeps_every_group_within_the_token_budget():
    lengths = [30, 7, 12, 30, 5, 19, 19, 2]
    groups = plan_micro_batches(lengths, budget=40)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) * max(lengths[i] for i in group) <= 40


def test_a_sample_longer_than_the_budget_gets_its_own_micro_batch():
    groups = plan_micro_batches([100, 3, 4], budget=10)
    assert [0] in groups
    assert len(groups) == 2


def test_collate_shifts_positions_to_the_token_that_predicts_each_response_token():
    batch = toy_batch(0, prompts=2)
    (mb,) = micro_batches(list(batch.samples), budget=10_000, pad_id=0)
    for row, i in enumerate(mb.rows):
        s = batch.samples[i]
        p, r = len(s.prompt_token_ids), len(s.token_ids)
        assert mb.mask[row].sum() == r
        # input at position (p - 1 + t) is followed by response token t
        for t in (0, r - 1):
            pos = int(mb.positions[row, t])
            assert pos == p - 1 + t
            assert int(mb.input_ids[row, pos + 1]) == s.token_ids[t] == int(mb.targets[row, t])
        assert int(mb.attention_mask[row].sum()) == p + r


@pytest.mark.parametrize("field,value,message", [
    ("prompt_token_ids", (), "prompt_token_ids is empty"),
    ("token_ids", (), "token_ids is empty"),
    ("advantage", float("nan"), "advantage is nan"),
    ("token_ids", (5, 999), "token id out of range"),
])
def test_bad_samples_are_refused_naming_the_sample_and_field(field, value, message):
    good = dict(prompt_id="q7", sample_idx=3, prompt_token_ids=(1, 2), token_ids=(3,), advantage=1.0, is_positive=True)
    with pytest.raises(BadBatchError, match=rf"sample q7#3: {message}"):
        validate_samples((ScoredSample(**{**good, field: value}),), vocab_size=259)


def test_micro_batches_cover_each_sample_once():
    batch = toy_batch(0, prompts=4)
    mbs = micro_batches(list(batch.samples), budget=64, pad_id=0)
    assert sorted(i for mb in mbs for i in mb.rows) == list(range(len(batch.samples)))
    assert all(mb.padded_tokens <= 64 or len(mb.rows) == 1 for mb in mbs)
    assert all(mb.advantages.dtype == torch.float32 for mb in mbs)

