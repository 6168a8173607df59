import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from oreal_core.models.tiny import IM_END, TinyModelSpec, build_tiny_policy, load_tokenizer


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("tiny"), seed=0)


def test_tokenizer_round_trips_spaced_text_and_unicode(policy_dir):
    text = "Compute 66 + 24 + 10. So \\boxed{100} é ∫ 中"
    for tok in (load_tokenizer(policy_dir), AutoTokenizer.from_pretrained(policy_dir)):
        assert tok.decode(tok(text)["input_ids"]) == text


def test_stop_word_is_a_single_token_and_chat_template(policy_dir):
    tok = load_tokenizer(policy_dir)
    assert tok.encode(IM_END) == [tok.eos_token_id]
    prompt = tok.apply_chat_template([{"role": "user", "content": "2 + 3?"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n2 + 3?<|im_end|>\n<|im_start|>assistant\n"


def test_model_is_untied_head_dim_64_and_deterministic(policy_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    cfg = model.config
    assert not cfg.tie_word_embeddings and cfg.hidden_size // cfg.num_attention_heads == 64
    again = AutoModelForCausalLM.from_pretrained(build_tiny_policy(tmp_path / "again", seed=0))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_policy(tmp_path / "other", seed=1))
    a, b, c = (dict(m.named_parameters()) for m in (model, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_bpe_merges_learned_from_corpus_shorten_text(tmp_path):
    corpus = [f"Compute {i} + {i + 1} = {2 * i + 1}" for i in range(300)]
    merged = load_tokenizer(build_tiny_policy(tmp_path / "bpe", spec=TinyModelSpec(vocab_size=400), corpus=corpus))
    plain = load_tokenizer(build_tiny_policy(tmp_path / "bytes"))
    text = "Compute 12 + 13 = 25"
    assert len(merged(text)["input_ids"]) < len(plain(text)["input_ids"])
    assert merged.decode(merged(text)["input_ids"]) == text


def test_spec_rejects_head_dims_vllm_cpu_cannot_run():
    with pytest.raises(ValueError, match="head_dim must be 64"):
        TinyModelSpec(hidden_size=64, num_heads=4)
