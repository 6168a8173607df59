import pytest
import torch

from oreal_core.algo.selection import SELECTIONS, group_pass_rates, keep_all, select_pairs


def _rewards(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_one_correct_and_one_incorrect_per_mixed_group():
    rewards = _rewards([[1, -1, -1, 1], [1, 1, 1, 1], [-1, -1, -1, -1], [-1, 1, -1, -1]])
    keep = select_pairs(rewards, torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and keep.shape == (4, 4)
    for row in (0, 3):
        assert keep[row].sum() == 2
        assert (rewards[row][keep[row]] == 1).sum() == 1 and (rewards[row][keep[row]] == -1).sum() == 1
    assert not keep[1].any() and not keep[2].any()  # p in {0, 1}: no signal, nothing kept
    assert keep[3, 1]  # the only correct sample


def test_choice_is_uniform_and_seeded():
    rewards = _rewards([[1, 1, 1, -1, -1]])
    g = torch.Generator().manual_seed(123)
    counts = torch.zeros(5)
    for _ in range(3000):
        counts += select_pairs(rewards, g)[0].float()
    # each of 3 correct picked ~1000 times, each of 2 incorrect ~1500 times
    assert torch.allclose(counts[:3], torch.full((3,), 1000.0), rtol=0.1)
    assert torch.allclose(counts[3:], torch.full((2,), 1500.0), rtol=0.1)
    a = select_pairs(rewards.repeat(8, 1), torch.Generator().manual_seed(7))
    b = select_pairs(rewards.repeat(8, 1), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_loop_matches_vectorised():
    g = torch.Generator().manual_seed(5)
    rewards = torch.where(torch.rand(40, 8, generator=g) < 0.5, 1.0, -1.0)
    draw = torch.rand(rewards.shape, generator=torch.Generator().manual_seed(9))
    keep = select_pairs(rewards, torch.Generator().manual_seed(9))
    for i in range(40):
        correct = [j for j in range(8) if rewards[i, j] > 0]
        wrong = [j for j in range(8) if rewards[i, j] < 0]
        expected = set()
        if correct and wrong:
            expected = {max(correct, key=lambda j: draw[i, j]), max(wrong, key=lambda j: draw[i, j])}
        assert set(torch.nonzero(keep[i]).flatten().tolist()) == expected


def test_keep_all_and_registry():
    rewards = _rewards([[1, 1], [-1, 1]])
    assert keep_all(rewards).all()
    assert set(SELECTIONS) == {"pair", "all"}


def test_pass_rates():
    torch.testing.assert_close(group_pass_rates(_rewards([[1, -1, -1, -1], [1, 1, 1, 1]])), torch.tensor([0.25, 1.0]))


def test_bad_rewards_rejected():
    with pytest.raises(ValueError, match="rewards: values must be"):
        select_pairs(_rewards([[1, 0.5]]))
    with pytest.raises(ValueError, match="rewards: empty"):
        select_pairs(torch.zeros(0, 4))


def test_ungraded_samples_are_never_selected():
    nan = float("nan")
    rewards = torch.tensor([[1.0, nan, -1.0, nan], [1.0, 1.0, nan, nan], [nan, nan, nan, nan]])
    graded = ~torch.isnan(rewards)
    keep = select_pairs(rewards, torch.Generator().manual_seed(0), graded)
    assert keep[0].tolist() == [True, False, True, False]
    assert not keep[1:].any()  # row 1: all graded samples correct (p = 1); row 2: none graded
    assert keep_all(rewards, None, graded).tolist() == graded.tolist()
    rates = group_pass_rates(rewards, graded)
    assert rates[:2].tolist() == [0.5, 1.0] and torch.isnan(rates[2])


def test_all_graded_mask_selects_as_without_one():
    g = torch.Generator().manual_seed(5)
    rewards = torch.where(torch.rand(30, 8, generator=g) < 0.4, 1.0, -1.0)
    ones = torch.ones(30, 8, dtype=torch.bool)
    assert torch.equal(select_pairs(rewards, torch.Generator().manual_seed(1), ones),
                       select_pairs(rewards, torch.Generator().manual_seed(1)))
