"""Bad model directories, checked with the real SmolLM2 files before any engine loads
weights: a clear RolloutInputError / PromptDataError naming the problem, not a crash in a stage."""

from __future__ import annotations

import json
import shutil

import pytest

from oreal_core.config import RolloutConfig
from oreal_core.data.prompts import check_prompts_fit
from oreal_core.data.records import PromptDataError
from oreal_core.rollout.base import RolloutInputError
from oreal_core.rollout.policy_dir import (
    end_of_turn_tokens,
    inspect_policy_dir,
    load_policy_tokenizer,
    stop_word_warning,
)
from oreal_core.types import Prompt

LIGHT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja")


@pytest.fixture
def copy_of(smollm2_dir, tmp_path):
    """The import's config and tokenizer files (not its 650 MB of weights)."""
    out = tmp_path / "model"
    out.mkdir()
    for name in LIGHT_FILES:
        if (smollm2_dir / name).is_file():
            shutil.copy(smollm2_dir / name, out / name)
    return out


def test_the_imported_model_passes_every_check(copy_of):
    tokenizer = load_policy_tokenizer(inspect_policy_dir(copy_of))
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


def test_a_directory_without_a_chat_template_is_refused(copy_of):
    (copy_of / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((copy_of / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (copy_of / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(RolloutInputError, match="no chat template"):
        load_policy_tokenizer(inspect_policy_dir(copy_of))


@pytest.mark.parametrize(("change", "named"), [
    ({"architectures": ["OddformerForCausalLM"]}, "architecture 'OddformerForCausalLM' is unknown"),
    ({"architectures": None, "model_type": "oddformer"}, "model_type 'oddformer' is unknown"),
])
def test_an_unknown_architecture_is_refused(copy_of, change, named):
    cfg = json.loads((copy_of / "config.json").read_text())
    cfg.update(change)
    (copy_of / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RolloutInputError, match=named):
        inspect_policy_dir(copy_of)


def test_a_context_shorter_than_prompt_plus_response_is_refused_naming_both(copy_of):
    info = inspect_policy_dir(copy_of)
    tokenizer = load_policy_tokenizer(info)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 7 + 5?"}], tokenize=False,
                                        add_generation_prompt=True)
    prompt = Prompt(prompt_id="p0", question="What is 7 + 5?", gold_answer="12", text=text, source="t.jsonl:1")
    fits = RolloutConfig(max_new_tokens=8000, max_length=16384)
    check_prompts_fit([prompt], tokenizer, fits, info.context_length)
    too_long = RolloutConfig(max_new_tokens=8180, max_length=16384)  # 8180 + the prompt's ~40 > 8192
    with pytest.raises(PromptDataError, match=r"t.jsonl:1: \d+ prompt tokens.*the model's 8192"):
        check_prompts_fit([prompt], tokenizer, too_long, info.context_length)


def test_the_stop_word_is_checked_against_the_models_own_end_of_turn_tokens(copy_of):
    info = inspect_policy_dir(copy_of)
    tokenizer = load_policy_tokenizer(info)
    assert end_of_turn_tokens(info, tokenizer) == {"<|im_end|>"}  # eos_token_id 2 and the tokenizer's eos
    assert stop_word_warning(info, tokenizer, "<|im_end|>") is None
    why = stop_word_warning(info, tokenizer, "<|endoftext|>")
    assert "rollout.stop_word='<|endoftext|>' is not among" in why and "'<|im_end|>'" in why
    generation = json.loads((copy_of / "generation_config.json").read_text())
    (copy_of / "generation_config.json").write_text(json.dumps({**generation, "eos_token_id": [2, 0]}))
    assert end_of_turn_tokens(info, tokenizer) == {"<|im_end|>", "<|endoftext|>"}  # a list of ids, as Qwen2.5's
    assert stop_word_warning(info, tokenizer, "<|endoftext|>") is None
