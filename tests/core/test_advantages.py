import pytest
import torch

from oreal_core.algo.advantages import group_advantages


def test_rloo_k4_one_correct_hand_computed():
    # K=4, 1 correct (p=1/4): A+ = 2K(1-p)/(K-1) = 2*4*0.75/3 = 2; A- = -2Kp/(K-1) = -2/3.
    # Directly: A+ = 1 - mean(-1,-1,-1) = 2; A- = -1 - mean(1,-1,-1) = -1 + 1/3 = -2/3.
    adv = group_advantages(torch.tensor([[1.0, -1.0, -1.0, -1.0]]), "rloo")
    torch.testing.assert_close(adv, torch.tensor([[2.0, -2 / 3, -2 / 3, -2 / 3]]))


@pytest.mark.parametrize("k_correct", range(1, 16))
def test_rloo_closed_form_k16(k_correct):
    K, p = 16, k_correct / 16
    rewards = torch.tensor([[1.0] * k_correct + [-1.0] * (K - k_correct)])
    adv = group_advantages(rewards, "rloo")
    assert adv[0, 0].item() == pytest.approx(2 * K * (1 - p) / (K - 1))
    assert adv[0, -1].item() == pytest.approx(-2 * K * p / (K - 1))


def test_rloo_sums_to_zero_per_group_and_is_zero_on_uniform_groups():
    g = torch.Generator().manual_seed(0)
    rewards = torch.where(torch.rand(50, 8, generator=g) < 0.4, 1.0, -1.0)
    rewards[0] = 1.0
    rewards[1] = -1.0
    adv = group_advantages(rewards, "rloo")
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(50), atol=1e-5, rtol=0)
    assert torch.all(adv[0] == 0) and torch.all(adv[1] == 0)


def test_grpo_matches_sqrt_terms():
    # Spec: A+ = sqrt((1-p)/p) * sqrt((K-1)/K), A- = -sqrt(p/(1-p)) * sqrt((K-1)/K).
    K, k = 16, 4
    p = k / K
    rewards = torch.tensor([[1.0] * k + [-1.0] * (K - k)])
    adv = group_advantages(rewards, "grpo")
    scale = ((K - 1) / K) ** 0.5
    assert adv[0, 0].item() == pytest.approx(((1 - p) / p) ** 0.5 * scale, rel=1e-5)
    assert adv[0, -1].item() == pytest.approx(-((p / (1 - p)) ** 0.5) * scale, rel=1e-5)
    assert torch.all(group_advantages(torch.ones(1, 4), "grpo") == 0)


def test_reinforce_is_raw_reward():
    rewards = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    torch.testing.assert_close(group_advantages(rewards, "reinforce"), rewards)


def test_loop_matches_vectorised():
    g = torch.Generator().manual_seed(1)
    rewards = torch.where(torch.rand(20, 6, generator=g) < 0.5, 1.0, -1.0)
    adv = group_advantages(rewards, "rloo")
    for i in range(20):
        for j in range(6):
            others = torch.cat([rewards[i, :j], rewards[i, j + 1:]])
            assert adv[i, j].item() == pytest.approx((rewards[i, j] - others.mean()).item(), abs=1e-6)


def test_integer_rewards_are_accepted():
    adv = group_advantages(torch.tensor([[1, -1]]), "rloo")
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, torch.tensor([[2.0, -2.0]]))


@pytest.mark.parametrize(
    "rewards, kind, message",
    [
        (torch.tensor([[1.0, 0.0]]), "rloo", "rewards: values must be \\+1 or -1"),
        (torch.tensor([[1.0, float("nan")]]), "rloo", "rewards: values must be"),
        (torch.tensor([1.0, -1.0]), "rloo", "rewards: expected 2 dimensions"),
        (torch.zeros(0, 4), "rloo", "rewards: empty"),
        (torch.tensor([[1.0]]), "rloo", "at least 2 samples"),
        (torch.tensor([[1.0, -1.0]]), "ppo", "kind: unknown advantage"),
    ],
)
def test_bad_input_names_the_argument(rewards, kind, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, kind)


NAN = float("nan")


def test_ungraded_samples_are_left_out_of_their_group():
    """A judge error is neither right nor wrong: the group is computed as if it had not been drawn."""
    rewards = torch.tensor([[1.0, NAN, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [NAN, NAN, NAN, 1.0]])
    graded = ~torch.isnan(rewards)
    adv = group_advantages(rewards, "rloo", graded)
    # Row 0 is RLOO over K=3 graded samples, p = 1/3: A+ = 2*3*(2/3)/2 = 2, A- = -2*3*(1/3)/2 = -1.
    torch.testing.assert_close(adv[0], torch.tensor([2.0, 0.0, -1.0, -1.0]))
    torch.testing.assert_close(adv[1], group_advantages(rewards[1:2], "rloo")[0])  # complete rows unchanged
    torch.testing.assert_close(adv[2], torch.zeros(4))  # one graded sample: no baseline, no advantage
    grpo = group_advantages(rewards, "grpo", graded)
    torch.testing.assert_close(grpo[0, [0, 2, 3]], group_advantages(torch.tensor([[1.0, -1.0, -1.0]]), "grpo")[0])
    torch.testing.assert_close(group_advantages(rewards, "reinforce", graded)[2], torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_all_graded_mask_equals_no_mask():
    g = torch.Generator().manual_seed(3)
    rewards = torch.where(torch.rand(16, 8, generator=g) < 0.5, 1.0, -1.0)
    for kind in ("rloo", "grpo", "reinforce"):
        assert torch.equal(group_advantages(rewards, kind, torch.ones(16, 8, dtype=torch.bool)),
                           group_advantages(rewards, kind))


def test_ungraded_rewards_are_not_checked_but_graded_ones_are():
    with pytest.raises(ValueError, match="rewards: values must be"):
        group_advantages(torch.tensor([[1.0, 0.5, NAN]]), "rloo", torch.tensor([[True, True, False]]))
    with pytest.raises(ValueError, match="graded: expected shape"):
        group_advantages(torch.tensor([[1.0, -1.0]]), "rloo", torch.tensor([True, True]))
