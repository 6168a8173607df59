import math

import pytest
import torch

from oreal_core.algo.token_rm import prefix_probability, sequence_loss, token_weights


def test_threshold_weights_hand_computed():
    # scores 2, 0, -4 -> cumulative means 2, 1, -2/3 -> 2q-1 = tanh(c/2) = tanh(1), tanh(.5), tanh(-1/3)
    scores = torch.tensor([[2.0, 0.0, -4.0], [2.0, 0.0, -4.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    w = token_weights(scores, mask, torch.tensor([True, False]))
    expected_pos = [math.tanh(1.0), math.tanh(0.5), 0.0]
    expected_neg = [0.0, 0.0, math.tanh(1 / 3)]
    torch.testing.assert_close(w, torch.tensor([expected_pos, expected_neg]), rtol=1e-5, atol=1e-6)


def test_zero_scores_give_q_half_and_zero_weights():
    # A zero-initialised RM head: q = 0.5 everywhere, so w+ = w- = 0 (why the actor is frozen first).
    scores = torch.zeros(3, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert torch.all(prefix_probability(scores, mask) == 0.5)
    assert torch.all(token_weights(scores, mask, torch.tensor([True, False, True])) == 0)


def test_padding_is_ignored_and_weighted_zero():
    scores = torch.tensor([[1.0, -3.0, float("nan"), 7.0]])
    mask = torch.tensor([[True, True, False, False]])
    w = token_weights(scores, mask, torch.tensor([True]))
    ref = token_weights(scores[:, :2], mask[:, :2], torch.tensor([True]))
    torch.testing.assert_close(w[:, :2], ref)
    assert torch.all(w[:, 2:] == 0)


def test_loop_matches_vectorised():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 9, generator=g) * 2
    lengths = [9, 1, 4, 7, 2, 9]
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    positive = torch.tensor([True, False, True, False, True, False])
    w = token_weights(scores, mask, positive)
    for b, n in enumerate(lengths):
        for t in range(n):
            q = torch.sigmoid(scores[b, : t + 1].mean())
            expected = max(0.0, float(2 * q - 1)) if positive[b] else max(0.0, float(1 - 2 * q))
            assert w[b, t].item() == pytest.approx(expected, abs=1e-6)


def test_general_thresholds_rescale_linearly():
    scores = torch.tensor([[math.log(3.0)]])  # q = 0.75
    mask = torch.ones(1, 1, dtype=torch.bool)
    w = token_weights(scores, mask, torch.tensor([True]), pos_threshold=0.6)
    assert w.item() == pytest.approx((0.75 - 0.6) / 0.4, rel=1e-5)


def test_topk_keeps_top_fraction_and_min_max_scales():
    # q rises then falls; positives keep the 2 highest-q tokens of 4 (ratio 0.5): scaled to 1 and 0
    # by min-max; a negative sample keeps the 2 lowest-q tokens.
    scores = torch.tensor([[1.0, 3.0, -2.0, -6.0]])  # cumulative means 1, 2, 2/3, -1
    mask = torch.ones(1, 4, dtype=torch.bool)
    w_pos = token_weights(scores, mask, torch.tensor([True]), mode="topk", topk_ratio=0.5)
    torch.testing.assert_close(w_pos, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    w = token_weights(scores, mask, torch.tensor([True]), mode="topk", topk_ratio=0.75)
    q = torch.sigmoid(torch.tensor([1.0, 2.0, 2 / 3]))
    torch.testing.assert_close(w, torch.tensor([[(q[0] - q[2]) / (q[1] - q[2]), 1.0, 0.0, 0.0]]))
    w_neg = token_weights(scores, mask, torch.tensor([False]), mode="topk", topk_ratio=0.5)
    assert w_neg[0, 3] == 1.0 and w_neg[0, 2] == 0.0 and w_neg[0, :2].sum() == 0


def test_weights_are_detached():
    scores = torch.randn(2, 3, requires_grad=True)
    w = token_weights(scores, torch.ones(2, 3, dtype=torch.bool), torch.tensor([True, False]))
    assert not w.requires_grad


def test_sequence_loss_hand_computed():
    # mean scores 2 (correct) and -1 (incorrect): BCE = log(1+e^-2) and log(1+e^-1); averaged.
    scores = torch.tensor([[1.0, 3.0, 0.0], [-1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    loss, metrics = sequence_loss(scores, mask, torch.tensor([True, False]))
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["rm_accuracy"].item() == 1.0
    loss.backward()
    # d/ds_t of BCE(mean) = (sigmoid(S) - y) / T / B, zero on padding
    g0 = (torch.sigmoid(torch.tensor(2.0)) - 1) / 2 / 2
    g1 = torch.sigmoid(torch.tensor(-1.0)) / 1 / 2
    torch.testing.assert_close(scores.grad, torch.tensor([[g0, g0, 0.0], [g1, 0.0, 0.0]]))


def test_sequence_loss_learns_a_separable_toy():
    torch.manual_seed(0)
    scores = torch.zeros(4, 3, requires_grad=True)
    mask = torch.ones(4, 3, dtype=torch.bool)
    correct = torch.tensor([True, False, True, False])
    opt = torch.optim.SGD([scores], lr=5.0)
    first = None
    for _ in range(50):
        loss, _ = sequence_loss(scores, mask, correct)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(math.log(2))
    assert loss.item() < 0.1


@pytest.mark.parametrize(
    "scores, mask, flags, message",
    [
        (torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2), torch.tensor([True]), "scores: 1 non-finite"),
        (torch.zeros(1, 2), torch.ones(1, 3), torch.tensor([True]), "mask: expected shape"),
        (torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([True]), "is_positive: expected shape"),
        (torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([True]), "mask: every sample"),
        (torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, dtype=torch.bool), "scores: empty"),
        (torch.zeros(1, 2), torch.full((1, 2), 2.0), torch.tensor([True]), "mask: must be boolean"),
    ],
)
def test_bad_input_names_the_argument(scores, mask, flags, message):
    with pytest.raises(ValueError, match=message):
        token_weights(scores, mask, flags)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode: unknown"):
        token_weights(torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([True]), mode="softmax")
