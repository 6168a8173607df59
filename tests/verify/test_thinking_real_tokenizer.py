"""Reasoning-model conventions with a real tokenizer (SmolLM2's byte-level BPE, in which
``<think>`` and ``</think>`` are ordinary text, several tokens each): a chat template that
opens the thinking section in the prompt, as DeepSeek-R1-Distill's does, and responses
cut at the last thinking-finish word before grading, as the reference's MathJudger does."""

from __future__ import annotations

import pytest

from oreal_core.config import VerifierConfig
from oreal_core.data.chat import chat_text
from oreal_core.models.tiny import load_tokenizer
from oreal_core.types import FinishReason, Outcome
from oreal_core.verify.extract import summary_part
from oreal_core.verify.verifier import VerifyItem, verify_batch

CFG = VerifierConfig(rule_timeout_s=5.0)
STOP = CFG.stop_word


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    tok = load_tokenizer(smollm2_dir)
    # R1-Distill style: the generation prompt ends inside an opened thinking section.
    tok.chat_template = tok.chat_template.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>\n'")
    return tok


def _as_sampled(tokenizer, text: str) -> str:
    """The response as the rollout stores it: generated token ids decoded with specials kept."""
    return tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=False)


def test_template_opens_the_thinking_section_and_think_tags_are_plain_text(tokenizer):
    prompt = chat_text(tokenizer, "What is 7 + 5?")
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    assert len(tokenizer.encode("</think>", add_special_tokens=False)) > 1  # not a special token here
    assert tokenizer.encode(STOP, add_special_tokens=False) == [tokenizer.eos_token_id]


@pytest.mark.parametrize(("response", "gold", "outcome"), [
    # the thinking section opened in the prompt: only its closing tag is in the response
    (f"7 + 5 is \\boxed{{11}}? no, 12.\n</think>\n\nThe answer is \\boxed{{12}}.{STOP}", "12", Outcome.CORRECT),
    (f"so \\boxed{{12}}\n</think>\n\nThe answer is \\boxed{{11}}.{STOP}", "12", Outcome.INCORRECT),
    (f"</think> draft \\boxed{{3}} </think>\n**Final Answer** \\boxed{{\\frac{{1}}{{2}}}}{STOP}", "0.5",
     Outcome.CORRECT),
])
def test_answers_after_the_thinking_section_are_graded(tokenizer, response, gold, outcome):
    sampled = _as_sampled(tokenizer, response)
    assert sampled == response  # byte-level BPE round trip: the cut markers survive decoding
    verdict = verify_batch([VerifyItem(sampled, FinishReason.STOP, gold, "q")], CFG)[0]
    assert verdict.outcome is outcome, verdict.reason


def test_a_response_cut_inside_its_thinking_is_truncated_not_graded(tokenizer):
    sampled = _as_sampled(tokenizer, "Let me think: 7 + 5 = \\boxed{12} maybe, or")
    verdict = verify_batch([VerifyItem(sampled, FinishReason.LENGTH, "12", "q")], CFG)[0]
    assert verdict.outcome is Outcome.TRUNCATED and verdict.reward == -1.0


def test_summary_is_what_follows_the_last_marker_without_the_stop_word(tokenizer):
    sampled = _as_sampled(tokenizer, f"a </think> b <conclude> c **Final Answer** d{STOP}")
    assert summary_part(sampled, STOP, CFG.thinking_finish_words) == "d"
