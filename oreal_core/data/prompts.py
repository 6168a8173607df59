"""The RL prompt set of a run: read, rendered through the chat template, balanced.

``data.prompts`` names a JSONL/Parquet file or an HF-datasets directory (see
:mod:`oreal_core.data.records`), or ``synthetic`` for the tiny task's train split.
Difficulty balancing repeats prompts by pass rate (OREAL_SPEC.md §3, the reference's bands);
prompts whose rate falls outside every band are dropped and counted in the report.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from oreal_core.algo.balance import difficulty_balance
from oreal_core.config import DataConfig, RolloutConfig
from oreal_core.data.chat import chat_text
from oreal_core.data.records import (
    ErrorList,
    LoadReport,
    PromptDataError,
    PromptRecord,
    read_prompt_records,
)
from oreal_core.data.synthetic import Problem
from oreal_core.data.tasks import synthetic_splits
from oreal_core.types import Prompt

SYNTHETIC = "synthetic"
ENCODE_BATCH = 1024  # prompts tokenised per call when checking lengths


@dataclass(frozen=True)
class PromptSet:
    """Rendered prompts in a fixed order, with what loading read and dropped."""

    prompts: tuple[Prompt, ...]
    report: LoadReport


def load_prompt_set(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase) -> PromptSet:
    """The configured prompt set, rendered with the policy's chat template and balanced."""
    if cfg.prompts == SYNTHETIC:
        train, _ = synthetic_splits(cfg.synthetic)
        prompts = tuple(problem_prompt(p, tokenizer, cfg.system_prompt) for p in train)
        return PromptSet(prompts, LoadReport(SYNTHETIC, len(prompts), len(prompts)))
    records, report = read_prompt_records(cfg.prompts)
    stem = Path(cfg.prompts).stem or Path(cfg.prompts).name
    prompts = [record_prompt(r, f"{stem}-{i}", tokenizer, cfg.system_prompt) for i, r in enumerate(records)]
    if not cfg.balance_by_pass_rate:
        return PromptSet(tuple(prompts), report)
    balanced, dropped = balance_prompts(prompts, cfg.difficulty_bands)
    if not balanced:
        raise PromptDataError(f"{cfg.prompts}: no prompts left: the pass rates of all {len(prompts)} fall outside "
                              f"data.difficulty_bands={list(cfg.difficulty_bands)} (or their repeat is 0)")
    counts = report.dropped + ((("pass_rate_outside_bands", dropped),) if dropped else ())
    return PromptSet(balanced, replace(report, kept=len(prompts) - dropped, dropped=counts))


def check_prompts_fit(prompts: Sequence[Prompt], tokenizer: PreTrainedTokenizerBase, rollout: RolloutConfig,
                      context_length: int) -> None:
    """Refuse the set if any prompt cannot be sampled from: prompt tokens + rollout.max_new_tokens
    must fit min(rollout.max_length, the model's context). Same tokenisation and limit as the
    rollout's ``encode_prompts``, so a prompt passing here is not refused at its step."""
    limit = min(rollout.max_length, context_length)
    errors = ErrorList("prompts too long")
    for prompt, length in _token_lengths(prompts, tokenizer):
        if length + rollout.max_new_tokens > limit:
            errors.add(f"{prompt.source}: {length} prompt tokens")
    errors.raise_any(f": with rollout.max_new_tokens={rollout.max_new_tokens} they exceed the context of {limit} "
                     f"tokens (min of rollout.max_length={rollout.max_length} and the model's {context_length}); "
                     "shorten or drop those prompts, or lower rollout.max_new_tokens")


def _token_lengths(prompts: Sequence[Prompt], tokenizer: PreTrainedTokenizerBase) -> Iterator[tuple[Prompt, int]]:
    """(prompt, token count of its text) once per distinct text: balancing repeats prompts."""
    unique: dict[str, Prompt] = {}
    for prompt in prompts:
        unique.setdefault(prompt.text, prompt)
    texts = list(unique)
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = texts[start:start + ENCODE_BATCH]
        for text, ids in zip(batch, tokenizer(batch, add_special_tokens=False)["input_ids"], strict=True):
            yield unique[text], len(ids)


def record_prompt(record: PromptRecord, prompt_id: str, tokenizer: PreTrainedTokenizerBase,
                  system_prompt: str = "") -> Prompt:
    return Prompt(prompt_id=prompt_id, question=record.question, gold_answer=record.gold_answer,
                  text=chat_text(tokenizer, record.question, system_prompt), pass_rate=record.pass_rate,
                  source=record.source, metadata=record.metadata)


def problem_prompt(problem: Problem, tokenizer: PreTrainedTokenizerBase, system_prompt: str = "") -> Prompt:
    return Prompt(prompt_id=problem.problem_id, question=problem.question, gold_answer=problem.answer,
                  text=chat_text(tokenizer, problem.question, system_prompt), source=problem.source,
                  metadata=(("split", problem.split),))


def balance_prompts(prompts: Sequence[Prompt],
                    bands: Sequence[tuple[float, float, int]]) -> tuple[tuple[Prompt, ...], int]:
    """Each prompt repeated by its pass-rate band; returns (balanced prompts, prompts dropped).

    Repeats get ids ``<id>#<k>`` (k >= 1) so every (prompt_id, sample_idx) stays unique in
    the lake; the first copy keeps the original id.
    """
    missing = [p for p in prompts if p.pass_rate is None]
    if missing:
        raise PromptDataError(f"{missing[0].source}: no pass_rate ({len(missing)} of {len(prompts)} prompts lack one); "
                              "set data.balance_by_pass_rate=false or estimate rates with `oreal prepare`")
    repeats = difficulty_balance(torch.tensor([p.pass_rate for p in prompts], dtype=torch.float64), bands).tolist()
    balanced = tuple(p if k == 0 else replace(p, prompt_id=f"{p.prompt_id}#{k}")
                     for p, count in zip(prompts, repeats, strict=True) for k in range(count))
    return balanced, sum(1 for count in repeats if count == 0)
