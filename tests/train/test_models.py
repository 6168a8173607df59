import pytest
import torch
import torch.nn.functional as F

from oreal_core.algo.token_rm import prefix_probability, token_weights
from oreal_core.config import ModelConfig
from oreal_core.train.batching import micro_batches
from oreal_core.train.models import build_actor, build_reference, build_token_rm, load_spec
from tests.train.conftest import toy_batch


@pytest.fixture(scope="module")
def spec(policy_dir):
    return load_spec(ModelConfig(dtype="float32", attn_implementation="sdpa"), policy_dir, on_gpu=False)


def test_log_probs_equal_a_full_hf_forward_and_ignore_padding(spec):
    actor = build_actor(spec).eval()
    samples = list(toy_batch(0, prompts=3).samples)
    (mb,) = micro_batches(samples, budget=10_000, pad_id=0)
    with torch.no_grad():
        logp, entropy = actor(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
        for row, i in enumerate(mb.rows):  # each sample alone, through the plain HF model
            s = samples[i]
            ids = torch.tensor([s.prompt_token_ids + s.token_ids])
            full = F.log_softmax(actor.model(input_ids=ids).logits[0].float(), dim=-1)
            p, r = len(s.prompt_token_ids), len(s.token_ids)
            expected = full[p - 1:p + r - 1].gather(-1, torch.tensor(s.token_ids)[:, None]).squeeze(-1)
            torch.testing.assert_close(logp[row, :r], expected, rtol=1e-5, atol=1e-5)
            ent = -(full[p - 1:p + r - 1].exp() * full[p - 1:p + r - 1]).sum(-1)
            torch.testing.assert_close(entropy[row, :r], ent, rtol=1e-5, atol=1e-5)


def test_reference_gives_the_actors_log_probs_without_the_entropy_nobody_reads(spec):
    actor, reference = build_actor(spec).eval(), build_reference(spec, torch.device("cpu"))
    (mb,) = micro_batches(list(toy_batch(0, prompts=3).samples), budget=10_000, pad_id=0)
    with torch.no_grad():
        logp, entropy = actor(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    ref_logp, ref_entropy = reference(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    assert ref_entropy is None and entropy is not None
    assert torch.equal(ref_logp, logp)


def test_token_rm_starts_at_zero_scores_so_q_is_one_half_and_weights_zero(spec):
    rm = build_token_rm(spec)
    assert rm.head.bias is None and rm.head.out_features == 1
    assert not hasattr(rm.backbone, "lm_head")
    (mb,) = micro_batches(list(toy_batch(0).samples), budget=10_000, pad_id=0)
    scores = rm(mb.input_ids, mb.attention_mask, mb.positions)
    assert scores.shape == mb.mask.shape and scores.dtype == torch.float32
    assert torch.count_nonzero(scores) == 0
    assert torch.equal(prefix_probability(scores, mb.mask), torch.full_like(scores, 0.5))
    assert torch.count_nonzero(token_weights(scores, mb.mask, mb.is_positive)) == 0


def test_token_rm_backbone_is_a_copy_of_the_policy(spec):
    rm, actor = build_token_rm(spec), build_actor(spec)
    a = dict(actor.model.base_model.named_parameters())
    for name, p in rm.backbone.named_parameters():
        assert torch.equal(p, a[name])
    rm.backbone.embed_tokens.weight.data.add_(1.0)  # a copy, not shared storage
    assert not torch.equal(rm.backbone.embed_tokens.weight, a["embed_tokens.weight"])


def test_missing_model_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an HF model directory"):
        load_spec(ModelConfig(), tmp_path / "nope", on_gpu=False)


def test_implicit_token_rm_scores_are_beta_times_the_log_ratio_to_the_reference(spec):
    """PRIME-style RM: s_t = beta * (log pi_rm(y_t) - log pi_ref(y_t)); 0 while it equals the policy."""
    rm, reference = build_token_rm(spec, kind="implicit", beta=0.5), build_actor(spec).eval()
    (mb,) = micro_batches(list(toy_batch(0).samples), budget=10_000, pad_id=0)
    with torch.no_grad():
        ref_logp, _ = reference(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
        scores = rm(mb.input_ids, mb.attention_mask, mb.positions, mb.targets, ref_logp)
        assert scores.shape == mb.mask.shape and scores.dtype == torch.float32
        assert torch.count_nonzero(scores) == 0  # a copy of the reference: log-ratio 0, q = 0.5
        assert torch.count_nonzero(token_weights(scores, mb.mask, mb.is_positive)) == 0
        rm.lm.model.lm_head.weight.add_(0.01 * torch.randn_like(rm.lm.model.lm_head.weight))
        moved = rm(mb.input_ids, mb.attention_mask, mb.positions, mb.targets, ref_logp)
        logp, _ = rm.lm(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    torch.testing.assert_close(moved, 0.5 * (logp - ref_logp))
    assert torch.count_nonzero(moved[mb.mask]) > 0
    with pytest.raises(ValueError, match="reference's log-probs"):
        rm(mb.input_ids, mb.attention_mask, mb.positions)


def test_likelihood_token_rm_scores_the_sampled_tokens_against_the_rms_own_expectation(spec):
    """token_rm.kind=likelihood: s_t = beta * (log pi_rm(y_t) + H_t), no reference needed; it starts
    from the policy's likelihood (nonzero), and a token likelier than a typical draw scores > 0."""
    rm = build_token_rm(spec, kind="likelihood", beta=2.0)
    (mb,) = micro_batches(list(toy_batch(0).samples), budget=10_000, pad_id=0)
    with torch.no_grad():
        scores = rm(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
        logp, entropy = rm.lm(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    torch.testing.assert_close(scores, 2.0 * (logp + entropy))
    assert torch.count_nonzero(scores[mb.mask]) == int(mb.mask.sum())
