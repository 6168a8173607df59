import json

import pytest

from oreal_core.config import DataConfig, SyntheticTaskConfig
from oreal_core.data.prompts import load_prompt_set
from oreal_core.data.records import PromptDataError
from oreal_core.models.tiny import build_tiny_policy, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_tiny_policy(tmp_path_factory.mktemp("tok")))


def _prompts_file(tmp_path, rates):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}?", "gold_answer": str(i), "pass_rate": r}) + "\n"
                            for i, r in enumerate(rates)))
    return str(path)


def test_chat_template_and_system_prompt_are_applied(tmp_path, tokenizer):
    cfg = DataConfig(prompts=_prompts_file(tmp_path, [0.5]), system_prompt="Be brief.", balance_by_pass_rate=False)
    (prompt,) = load_prompt_set(cfg, tokenizer).prompts
    assert prompt.text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nq0?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    assert prompt.prompt_id == "prompts-0" and prompt.gold_answer == "0" and prompt.pass_rate == 0.5


def test_difficulty_balancing_repeats_by_band_and_counts_drops(tmp_path, tokenizer):
    rates = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    cfg = DataConfig(prompts=_prompts_file(tmp_path, rates), balance_by_pass_rate=True)
    result = load_prompt_set(cfg, tokenizer)
    ids = [p.prompt_id for p in result.prompts]
    assert [sum(i.split("#")[0] == f"prompts-{k}" for i in ids) for k in range(6)] == [6, 4, 4, 2, 0, 0]
    assert len(set(ids)) == len(ids) == 16
    assert result.report.as_dict()["dropped"] == {"pass_rate_outside_bands": 2} and result.report.kept == 4


def test_balancing_without_pass_rates_is_an_error_naming_the_row(tmp_path, tokenizer):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question": "a?", "answer": "1"}) + "\n")
    with pytest.raises(PromptDataError, match=f"{path}:1: no pass_rate"):
        load_prompt_set(DataConfig(prompts=str(path), balance_by_pass_rate=True), tokenizer)


def test_synthetic_prompt_set_is_the_train_split(tokenizer):
    cfg = DataConfig(prompts="synthetic", balance_by_pass_rate=False,
                     synthetic=SyntheticTaskConfig(train_size=100, heldout_size=10))
    result = load_prompt_set(cfg, tokenizer)
    assert len(result.prompts) == 100 and result.report.kept == 100
    assert all(p.text.endswith("<|im_start|>assistant\n") and "split=train" in p.source for p in result.prompts)
