"""Rendering a question into the chat-templated text the policy sees."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def chat_text(tokenizer: PreTrainedTokenizerBase, question: str, system_prompt: str = "") -> str:
    """The policy's own chat template, with the config's system prompt when one is set."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
