import math

import pytest
import torch

from oreal_core.algo.rm_health import (
    auc,
    localisation,
    padded,
    prefix_drops,
    rm_health,
    sequence_logits,
    weight_metrics,
    within_pair_accuracy,
)
from oreal_core.algo.token_rm import sequence_loss


def test_auc_hand_computed_with_ties():
    # positives 3, 1; negatives 2, 1, 0. Pairs (pos, neg): 3 beats all three; 1 beats 0,
    # ties 1 (1/2), loses to 2 -> (3 + 1.5) / 6
    values = torch.tensor([3.0, 1.0, 2.0, 1.0, 0.0])
    labels = torch.tensor([True, True, False, False, False])
    assert auc(values, labels) == pytest.approx(4.5 / 6)
    assert auc(torch.zeros(4), torch.tensor([True, False, True, False])) == 0.5  # all tied: chance
    assert auc(values, torch.ones(5, dtype=torch.bool)) is None


def test_auc_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (40,), generator=g).double()  # many ties
    labels = torch.rand(40, generator=g) > 0.4
    pos, neg = values[labels], values[~labels]
    diff = pos[:, None] - neg[None, :]
    expected = float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    assert auc(values, labels) == pytest.approx(expected)


def test_within_pair_accuracy_pairs_only_samples_of_one_prompt():
    # prompt 0: pos 1.0 > neg 0.0 (win); prompt 1: pos -1.0 < neg 2.0 (loss); prompt 2: tie;
    # prompt 3: only a positive (no pair). Across prompts pos 1.0 < neg 2.0 must not count.
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5, 0.5, 9.0])
    positive = torch.tensor([True, False, True, False, True, False, True])
    group = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    assert within_pair_accuracy(logits, positive, group) == pytest.approx(1.5 / 3)
    assert within_pair_accuracy(logits[:1], positive[:1], group[:1]) is None


def test_within_pair_accuracy_all_pairs_of_a_prompt_with_selection_all():
    # two positives (3, 0) and two negatives (1, -1) of one prompt: 3 beats both, 0 beats -1 only
    logits = torch.tensor([3.0, 0.0, 1.0, -1.0])
    positive = torch.tensor([True, True, False, False])
    assert within_pair_accuracy(logits, positive, torch.zeros(4, dtype=torch.long)) == pytest.approx(3 / 4)


def test_sequence_logits_and_bce_match_the_rm_loss():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 6, generator=g)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2, 4, 1])[:, None]
    positive = torch.tensor([True, False, True, False])
    loss, _ = sequence_loss(scores, mask, positive)
    out = rm_health(scores, torch.zeros_like(scores), mask, positive, torch.tensor([0, 0, 1, 1]))
    assert out["rm/bce"] == pytest.approx(float(loss), abs=1e-6)
    assert sequence_logits(scores, mask)[1].item() == pytest.approx(float(scores[1, :2].mean()), abs=1e-6)


def test_weight_metrics_hand_computed():
    # positive row: weights 0.5, 0.1 (third is padding); negative row: 0, 0.4, 0.2
    weights = torch.tensor([[0.5, 0.1, 0.9], [0.0, 0.4, 0.2]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = weight_metrics(weights, mask, torch.tensor([True, False]))
    assert out["rm/w_pos_mean"] == pytest.approx(0.3) and out["rm/w_pos_std"] == pytest.approx(0.2)
    assert out["rm/w_neg_mean"] == pytest.approx(0.2)
    assert out["rm/w_neg_std"] == pytest.approx(math.sqrt((0.04 + 0.04 + 0.0) / 3))
    assert out["rm/zero_weight_frac"] == pytest.approx(1 / 5)
    only_pos = weight_metrics(weights[:1], mask[:1], torch.tensor([True]))
    assert "rm/w_neg_mean" not in only_pos  # absent, not NaN


def test_zero_initialised_rm_reads_as_chance():
    # The RM head starts at 0: every logit ties, so pair accuracy and AUC are 1/2, BCE ln 2,
    # every weight 0.
    scores, mask = torch.zeros(4, 5), torch.ones(4, 5, dtype=torch.bool)
    out = rm_health(scores, torch.zeros(4, 5), mask, torch.tensor([True, False, True, False]),
                    torch.tensor([0, 0, 1, 1]))
    assert out["rm/within_pair_accuracy"] == 0.5 and out["rm/auc"] == 0.5
    assert out["rm/bce"] == pytest.approx(math.log(2)) and out["rm/zero_weight_frac"] == 1.0
    assert out["rm/w_pos_mean"] == out["rm/w_neg_std"] == 0.0


def test_padded_lists():
    values, mask = padded([[1.0, 2.0], [3.0]])
    assert values.tolist() == [[1.0, 2.0], [3.0, 0.0]] and mask.tolist() == [[True, True], [True, False]]
    empty, empty_mask = padded([])
    assert empty.shape == (0, 0) and empty_mask.shape == (0, 0)


def test_prefix_drops_hand_computed():
    # scores 0, 2, -4: cumulative means 0, 1, -2/3 -> q 0.5, s(1), s(-2/3); q_0 = 0.5
    s = torch.sigmoid
    drops = prefix_drops(torch.tensor([[0.0, 2.0, -4.0, 7.0]]), torch.tensor([[True, True, True, False]]))
    q1, q2 = float(s(torch.tensor(1.0))), float(s(torch.tensor(-2 / 3)))
    torch.testing.assert_close(drops, torch.tensor([[0.0, 0.5 - q1, q1 - q2, 0.0]], dtype=torch.float64))


def test_localisation_hand_computed():
    scores = torch.tensor([[1.0, 1.0, -8.0, 0.0, 0.0],   # wrong at token 2: the RM's value falls there
                           [0.0, 0.0, 0.0, 0.0, 0.0]])   # a constant RM, wrong at token 1
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = localisation(scores, mask, torch.tensor([2, 1]), top_k=3)
    # Row 0: cumulative means 1, 1, -2, -1.5, -1.2 -> q .731, .731, .119, .182, .231;
    # drops -.231, 0, +.612, -.063, -.049. Row 1: q .5 everywhere, drops all 0.
    # Wrong tokens' drops: .612 and 0; the 8 others: -.231, 0, -.063, -.049 and four 0s.
    # .612 beats all 8; 0 beats the 3 negative ones and ties the 5 zeros: (8 + 3 + 2.5) / 16.
    assert out["rm/loc_auroc"] == pytest.approx(13.5 / 16)
    # Row 0: token 2 has the lowest q, no rival -> hit. Row 1: 4 tokens tie its q -> miss.
    assert out["rm/loc_hit_frac"] == 0.5 and out["rm/loc_responses"] == 2.0


def test_localisation_edge_cases():
    assert localisation(torch.zeros(0, 0), torch.zeros(0, 0, dtype=torch.bool),
                        torch.zeros(0, dtype=torch.long)) == {"rm/loc_responses": 0.0}
    with pytest.raises(ValueError, match="first_wrong"):
        localisation(torch.zeros(1, 3), torch.tensor([[True, True, False]]), torch.tensor([2]))
