"""A cycle's prompt set: the config's prompts and the incoming ones, rated by the start model.

OREAL learns only from prompts the policy sometimes solves (0 < pass rate < 1), and which
those are changes as the champion improves: every cycle re-estimates each prompt's pass rate
under its start model (the ``prepare`` stage's sampling, oreal_core/pipeline/prepare.py) and
writes the prompt file its run balances by ``data.difficulty_bands``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from oreal_core.algo.balance import difficulty_balance
from oreal_core.config import OrealConfig
from oreal_core.data.prompts import load_prompt_set, record_prompt
from oreal_core.data.records import PromptDataError, PromptRecord
from oreal_core.pipeline.prepare import estimate_pass_rates, write_prompt_file
from oreal_core.rollout import SamplingSpec, open_engine
from oreal_core.types import Prompt
from oreal_core.verify.verifier import Verifier


@dataclass(frozen=True)
class CyclePrompts:
    config_prompts: int  # drawn from data.prompts
    incoming_prompts: int  # read from the incoming files (after de-duplication)
    duplicates: int  # questions dropped as already present
    samples_per_prompt: int
    mean_pass_rate: float
    trainable: int  # prompts in some data.difficulty_bands band with repeat > 0
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def choose_prompts(cfg: OrealConfig, tokenizer, incoming: Sequence[PromptRecord],
                   number: int) -> tuple[list[Prompt], int, int]:
    """``retrain.config_prompts`` of data.prompts (seeded by the cycle number), then the incoming
    prompts, de-duplicated by question. Returns (prompts, incoming kept, duplicates dropped).
    The same question with two different gold answers is refused, naming both rows."""
    pool = list(load_prompt_set(replace(cfg.data, balance_by_pass_rate=False), tokenizer).prompts)
    wanted = cfg.retrain.config_prompts
    if wanted is not None and wanted < len(pool):
        pool = random.Random(f"{cfg.run.seed}:cycle:{number}").sample(pool, wanted)
    chosen: dict[str, Prompt] = {}
    duplicates = 0
    for i, prompt in enumerate([*pool, *(record_prompt(r, f"incoming-{i}", tokenizer, cfg.data.system_prompt)
                                         for i, r in enumerate(incoming))]):
        key = " ".join(prompt.question.split())
        seen = chosen.get(key)
        if seen is None:
            chosen[key] = replace(prompt, prompt_id=f"p{i}")
            continue
        if seen.gold_answer.strip() != prompt.gold_answer.strip():
            raise PromptDataError(f"{prompt.source}: the question of {seen.source} with another gold answer "
                                  f"({prompt.gold_answer!r}, there {seen.gold_answer!r}); fix or remove one")
        duplicates += 1
    kept_incoming = len(chosen) - len({" ".join(p.question.split()) for p in pool})
    return list(chosen.values()), kept_incoming, duplicates


def rate_prompts(cfg: OrealConfig, start_checkpoint: str, incoming: Sequence[PromptRecord], number: int,
                 out: Path) -> CyclePrompts:
    """Sample every chosen prompt under the start model, grade it, write ``out`` (JSONL with
    pass_rate) whole or not at all."""
    began = time.perf_counter()
    spec = SamplingSpec.from_rollout(cfg.rollout)
    with open_engine(start_checkpoint, cfg) as engine, Verifier(cfg.verifier, seed=cfg.run.seed) as verifier:
        prompts, kept_incoming, duplicates = choose_prompts(cfg, engine.tokenizer, incoming, number)
        rates, _ = estimate_pass_rates(prompts, engine, verifier, spec)
    write_prompt_file(out, prompts, rates)
    repeats = difficulty_balance(torch.tensor(rates, dtype=torch.float64), cfg.data.difficulty_bands)
    return CyclePrompts(config_prompts=len(prompts) - kept_incoming, incoming_prompts=kept_incoming,
                        duplicates=duplicates, samples_per_prompt=spec.n, mean_pass_rate=sum(rates) / len(rates),
                        trainable=int((repeats > 0).sum()), seconds=round(time.perf_counter() - began, 2))
