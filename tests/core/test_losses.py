import dataclasses

import pytest
import torch

from oreal_core.algo.advantages import group_advantages
from oreal_core.algo.kl import KL_ESTIMATORS
from oreal_core.algo.losses import oreal_loss, token_counts
from oreal_core.algo.selection import keep_all
from oreal_core.config import LossConfig

CFG = LossConfig()  # oreal, c+ = 1, c- = 0.5, pos_mult_adv, beta = 0.01, k3


def _toy():
    """Sample 0 correct (3 tokens, A+ = 2), sample 1 incorrect (2 tokens + padding, A- = -2/3)."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.2, float("nan")]], requires_grad=True)
    ref = torch.tensor([[-1.2, -2.0, -0.4], [-1.5, -0.3, 5.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    adv = torch.tensor([2.0, -2 / 3])
    positive = torch.tensor([True, False])
    return logp, ref, mask, adv, positive


def _k3(lp, rp):
    d = rp - lp
    return torch.exp(torch.tensor(d)).item() - d - 1


def test_two_sample_toy_value_and_gradient_hand_computed():
    logp, ref, mask, adv, positive = _toy()
    loss, m = oreal_loss(logp, ref, mask, adv, None, positive, CFG)
    # L+ = c+ * A+ * sum(-logp+) / N+ = 1 * 2 * 3.5 / 3
    l_pos = 2 * 3.5 / 3
    # L- = -c- * sum(ratio * A-) / N- = -0.5 * (2 * -2/3) / 2 = 1/3
    l_neg = 1 / 3
    pairs = [(-1.0, -1.2), (-2.0, -2.0), (-0.5, -0.4), (-1.5, -1.5), (-0.2, -0.3)]
    l_kl = 0.01 * sum(_k3(a, b) for a, b in pairs) / 5
    assert m["loss_pos"].item() == pytest.approx(l_pos, rel=1e-6)
    assert m["loss_neg"].item() == pytest.approx(l_neg, rel=1e-6)
    assert m["loss_kl"].item() == pytest.approx(l_kl, rel=1e-5)
    assert loss.item() == pytest.approx(l_pos + l_neg + l_kl, rel=1e-6)

    loss.backward()
    # dk3/dlogp = 1 - exp(ref - logp); the KL part is divided by N_all = 5.
    dkl = [0.01 * (1 - torch.exp(torch.tensor(b - a)).item()) / 5 for a, b in pairs]
    expected = torch.tensor([
        [-2 / 3 + dkl[0], -2 / 3 + dkl[1], -2 / 3 + dkl[2]],
        [0.5 * (2 / 3) / 2 + dkl[3], 0.5 * (2 / 3) / 2 + dkl[4], 0.0],
    ])
    torch.testing.assert_close(logp.grad, expected, rtol=1e-5, atol=1e-7)
    # positive sample's log-probs go up under descent, the negative's go down
    assert torch.all(logp.grad[0] < 0) and torch.all(logp.grad[1, :2] > 0)


def test_token_weights_scale_each_token():
    logp, ref, mask, adv, positive = _toy()
    weights = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3]])
    loss, m = oreal_loss(logp, ref, mask, adv, weights, positive, dataclasses.replace(CFG, kl_coef=0.0))
    assert m["loss_pos"].item() == pytest.approx(2 * (1.0 * 1.0 + 0.5 * 2.0 + 0.0) / 3)
    assert m["loss_neg"].item() == pytest.approx(-0.5 * (-2 / 3) * (0.0 + 1.0) / 2)
    loss.backward()
    assert logp.grad[0, 2] == 0 and logp.grad[1, 0] == 0


def test_bc_gradient_equals_reinforce_with_a_plus_on_policy():
    torch.manual_seed(0)
    base = torch.randn(3, 5).log_softmax(-1)
    mask = torch.ones(3, 5, dtype=torch.bool)
    adv = torch.tensor([1.5, 0.7, 2.0])
    positive = torch.ones(3, dtype=torch.bool)
    grads = []
    for variant in ("oreal", "policy_gradient"):
        logp = base.clone().requires_grad_(True)
        cfg = dataclasses.replace(CFG, variant=variant, kl_coef=0.0)
        loss, _ = oreal_loss(logp, base, mask, adv, None, positive, cfg)
        loss.backward()
        grads.append(logp.grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("kl_type", ["unbias", "mse"])
def test_kl_zero_with_zero_gradient_at_reference(kl_type):
    logp = torch.randn(4, 6).log_softmax(-1).requires_grad_(True)
    cfg = LossConfig(kl_type=kl_type, positive_loss_factor=0.0, negative_loss_factor=0.0)
    loss, m = oreal_loss(logp, logp.detach().clone(), torch.ones(4, 6), torch.ones(4), None,
                         torch.tensor([True, False, True, False]), cfg)
    assert m["loss_kl"].item() == 0.0
    loss.backward()
    assert torch.all(logp.grad == 0)


def test_kl_estimators_values():
    lp, rp = torch.tensor([-1.0]), torch.tensor([-1.5])
    assert KL_ESTIMATORS["unbias"](lp, rp).item() == pytest.approx(float(torch.exp(torch.tensor(-0.5))) + 0.5 - 1)
    assert KL_ESTIMATORS["kl"](lp, rp).item() == pytest.approx(0.5)
    assert KL_ESTIMATORS["mse"](lp, rp).item() == pytest.approx(0.125)


def test_padding_values_do_not_matter():
    logp, ref, mask, adv, positive = _toy()
    loss_a, _ = oreal_loss(logp, ref, mask, adv, None, positive, CFG)
    other = logp.detach().clone()
    other[1, 2] = 123.0
    ref2 = ref.clone()
    ref2[1, 2] = float("inf")
    loss_b, _ = oreal_loss(other.requires_grad_(True), ref2, mask, adv, None, positive, CFG)
    assert loss_a.item() == pytest.approx(loss_b.item())
    loss_a.backward()
    assert logp.grad[1, 2] == 0


def test_uniform_groups_contribute_nothing_but_kl():
    # Groups all-correct / all-wrong: RLOO gives A = 0, so with keep-all selection their
    # policy terms vanish; only the KL term (here off) could move them.
    rewards = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    adv = group_advantages(rewards, "rloo")[keep_all(rewards)]
    logp = torch.randn(6, 4).log_softmax(-1).requires_grad_(True)
    positive = (rewards > 0).flatten()
    for variant in ("oreal", "oreal_no_bc", "policy_gradient"):
        cfg = dataclasses.replace(CFG, variant=variant, kl_coef=0.0)
        loss, _ = oreal_loss(logp, logp.detach(), torch.ones(6, 4), adv, None, positive, cfg)
        loss.backward()
        assert loss.item() == 0.0 and torch.all(logp.grad == 0)
        logp.grad = None


def test_loop_matches_vectorised():
    g = torch.Generator().manual_seed(3)
    B, T = 6, 7
    logp = -torch.rand(B, T, generator=g) * 3
    ref = -torch.rand(B, T, generator=g) * 3
    lengths = torch.tensor([7, 3, 5, 1, 6, 2])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    adv = torch.randn(B, generator=g)
    weights = torch.rand(B, T, generator=g)
    positive = torch.tensor([True, False, True, False, False, True])
    loss, _ = oreal_loss(logp, ref, mask, adv, weights, positive, CFG)
    n_pos = sum(int(lengths[b]) for b in range(B) if positive[b])
    n_neg = sum(int(lengths[b]) for b in range(B) if not positive[b])
    total = 0.0
    for b in range(B):
        for t in range(int(lengths[b])):
            lp, rp, w, a = logp[b, t].item(), ref[b, t].item(), weights[b, t].item(), adv[b].item()
            if positive[b]:
                total += 1.0 * a * w * -lp / n_pos
            else:
                total += -0.5 * a * w / n_neg
            total += 0.01 * _k3(lp, rp) / (n_pos + n_neg)
    assert loss.item() == pytest.approx(total, rel=1e-5)


@pytest.mark.parametrize("variant", ["oreal", "oreal_no_bc", "policy_gradient"])
def test_micro_batches_with_global_counts_sum_to_the_full_batch(variant):
    g = torch.Generator().manual_seed(4)
    B, T = 6, 5
    base = -torch.rand(B, T, generator=g) * 2
    ref = -torch.rand(B, T, generator=g) * 2
    mask = torch.arange(T)[None, :] < torch.tensor([5, 2, 4, 3, 5, 1])[:, None]
    adv = torch.randn(B, generator=g)
    positive = torch.tensor([True, True, False, False, True, False])
    cfg = dataclasses.replace(CFG, variant=variant)

    full = base.clone().requires_grad_(True)
    loss_full, _ = oreal_loss(full, ref, mask, adv, None, positive, cfg)
    loss_full.backward()

    counts = token_counts(mask, positive)
    split = base.clone().requires_grad_(True)
    total = 0.0
    for rows in (slice(0, 2), slice(2, 6)):
        part, _ = oreal_loss(split[rows], ref[rows], mask[rows], adv[rows], None, positive[rows], cfg,
                             num_pos_tokens=counts.pos, num_neg_tokens=counts.neg, num_tokens=counts.all)
        part.backward()
        total += part.item()
    assert total == pytest.approx(loss_full.item(), rel=1e-5)
    torch.testing.assert_close(split.grad, full.grad)


def test_no_bc_and_policy_gradient_normalise_by_all_tokens():
    logp, ref, mask, adv, positive = _toy()
    cfg = dataclasses.replace(CFG, variant="oreal_no_bc", kl_coef=0.0)
    _, m = oreal_loss(logp, ref, mask, adv, None, positive, cfg)
    assert m["loss_pos"].item() == pytest.approx(-1.0 * 2 * 3 / 5)
    assert m["loss_neg"].item() == pytest.approx(-0.5 * (-2 / 3) * 2 / 5)
    cfg = dataclasses.replace(CFG, variant="policy_gradient", kl_coef=0.0)
    _, m = oreal_loss(logp, ref, mask, adv, None, positive, cfg)
    assert m["loss_pos"].item() == pytest.approx(-2 * 3 / 5)
    assert m["loss_neg"].item() == pytest.approx((2 / 3) * 2 / 5)


def test_pos_mult_adv_off_uses_unit_weight():
    logp, ref, mask, adv, positive = _toy()
    cfg = dataclasses.replace(CFG, pos_mult_adv=False, kl_coef=0.0)
    _, m = oreal_loss(logp, ref, mask, adv, None, positive, cfg)
    assert m["loss_pos"].item() == pytest.approx(3.5 / 3)


def test_batch_without_negatives_has_zero_negative_term():
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, m = oreal_loss(logp, logp.detach(), torch.ones(1, 2), torch.tensor([1.0]), None, torch.tensor([True]), CFG)
    assert m["loss_neg"].item() == 0.0 and loss.item() == pytest.approx(1.0)


def _bad(**change):
    logp, ref, mask, adv, positive = _toy()
    args = dict(logp=logp, ref_logp=ref, mask=mask, advantages=adv, weights=None, is_positive=positive, cfg=CFG)
    args.update(change)
    return args


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(logp=torch.zeros(2, 3, 1)), "logp: expected 2 dimensions"),
        (dict(logp=torch.zeros(0, 3), ref_logp=torch.zeros(0, 3)), "logp: empty"),
        (dict(ref_logp=torch.zeros(2, 4)), "ref_logp: expected shape"),
        (dict(mask=torch.ones(3, 3)), "mask: expected shape"),
        (dict(advantages=torch.ones(3)), "advantages: expected shape"),
        (dict(advantages=torch.tensor([1.0, float("nan")])), "advantages: 1 non-finite"),
        (dict(is_positive=torch.tensor([True])), "is_positive: expected shape"),
        (dict(weights=torch.ones(2, 2)), "weights: expected shape"),
        (dict(weights=torch.full((2, 3), float("nan"))), "weights: 5 non-finite"),
        (dict(logp=torch.tensor([[float("nan"), 0.0, 0.0], [0.0, 0.0, 0.0]])), "logp: 1 non-finite"),
        (dict(ref_logp=torch.tensor([[float("-inf"), 0.0, 0.0], [0.0, 0.0, 0.0]])), "ref_logp: 1 non-finite"),
        (dict(cfg=dataclasses.replace(CFG, variant="ppo")), "cfg.variant: unknown loss variant"),
        (dict(cfg=dataclasses.replace(CFG, kl_type="k9")), "cfg.kl_type: unknown"),
    ],
)
def test_bad_input_names_the_argument(change, message):
    with pytest.raises(ValueError, match=message):
        oreal_loss(**_bad(**change))


def test_global_count_smaller_than_local_is_refused():
    with pytest.raises(ValueError, match="num_tokens=1.0: smaller than"):
        oreal_loss(**_bad(), num_tokens=1)


def test_overflowing_kl_is_refused_naming_the_term():
    logp = torch.tensor([[-200.0]], requires_grad=True)
    with pytest.raises(ValueError, match="loss_kl: non-finite"):
        oreal_loss(logp, torch.tensor([[0.0]]), torch.ones(1, 1), torch.tensor([1.0]), None, torch.tensor([True]), CFG)
