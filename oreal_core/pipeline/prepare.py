"""Pass rates of a prompt set under the start policy, written as an OREAL prompt file.

The reference trains on ``internlm/OREAL-RL-Prompts``, whose ``pass_rate`` field was
estimated beforehand with the SFT policy; at load time prompts are repeated by difficulty
band and the easy ones dropped (OREAL_SPEC.md §3, :func:`oreal_core.data.prompts.load_prompt_set`).
``prepare`` makes such a file for any prompt set: ``K`` samples per prompt at the rollout
settings, graded by the run's verifier, ``pass_rate = correct / K``. The file keeps one row
per prompt; the balancing itself stays in the config (``data.difficulty_bands``), so a run
on the file with ``data.balance_by_pass_rate: true`` trains on the balanced pool, and the
bands can be changed without sampling again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from oreal_core.algo.balance import difficulty_balance
from oreal_core.config import OrealConfig
from oreal_core.data.prompts import load_prompt_set
from oreal_core.models.sft import start_policy_dir
from oreal_core.rollout import RolloutEngine, SamplingSpec, open_engine
from oreal_core.types import Outcome, Prompt
from oreal_core.verify.verifier import JudgeUnavailable, Verifier, VerifyItem

log = logging.getLogger(__name__)

CHUNK_PROMPTS = 256  # prompts per generate call: bounds memory and shows progress on big sets


@dataclass(frozen=True)
class PrepareReport:
    out: str
    prompts: int
    samples_per_prompt: int
    mean_pass_rate: float
    outcomes: dict[str, int]  # verdict outcome -> samples
    bands: tuple[tuple[str, int, int], ...]  # (band "[low, high)", prompts in it, repeat)
    balanced_prompts: int  # the training pool after balancing by data.difficulty_bands
    dropped_prompts: int  # pass rate outside every band (the reference drops >= 0.8)
    seconds: float

    def as_dict(self) -> dict:
        return {**self.__dict__, "bands": [list(b) for b in self.bands]}


def estimate_pass_rates(prompts: Sequence[Prompt], engine: RolloutEngine, verifier: Verifier,
                        spec: SamplingSpec) -> tuple[list[float], Counter]:
    """``spec.n`` samples per prompt, each graded; returns pass rates in prompt order and outcome counts."""
    correct: Counter = Counter()
    outcomes: Counter = Counter()
    for start in range(0, len(prompts), CHUNK_PROMPTS):
        chunk = prompts[start:start + CHUNK_PROMPTS]
        by_id = {p.prompt_id: p for p in chunk}
        samples = engine.generate(chunk, spec).samples
        verdicts = verifier.verify([VerifyItem.of(s, by_id[s.prompt_id]) for s in samples])
        unjudged = [v for v in verdicts if v.outcome is Outcome.JUDGE_ERROR]
        if unjudged:  # a pass rate must not count an unjudged sample as wrong: stop before sampling more
            raise JudgeUnavailable(f"{len(unjudged)} of {len(verdicts)} samples got no judge verdict (first: "
                                   f"{unjudged[0].reason}); nothing was written. Check verifier.judge.hosts.")
        for sample, verdict in zip(samples, verdicts, strict=True):
            correct[sample.prompt_id] += verdict.correct
            outcomes[verdict.outcome.value] += 1
        log.info("prepare: %d / %d prompts graded", min(start + CHUNK_PROMPTS, len(prompts)), len(prompts))
    return [correct[p.prompt_id] / spec.n for p in prompts], outcomes


def write_prompt_file(path: Path, prompts: Sequence[Prompt], pass_rates: Sequence[float]) -> None:
    """JSONL in the OREAL-RL-Prompts fields, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with staging.open("w") as f:
            for prompt, rate in zip(prompts, pass_rates, strict=True):
                f.write(json.dumps({"question": prompt.question, "gold_answer": prompt.gold_answer,
                                    "pass_rate": rate, "source": prompt.source}) + "\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def prepare(cfg: OrealConfig, out: str | Path, *, samples: int | None = None, limit: int | None = None,
            overwrite: bool = False) -> PrepareReport:
    """Estimate the pass rate of ``data.prompts`` (first ``limit``) with the start policy into ``out``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: choose another --out or pass --overwrite")
    if samples is not None and samples < 1:
        raise ValueError(f"samples={samples}: must be >= 1")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: must be >= 1")
    start = time.perf_counter()
    spec = SamplingSpec.from_rollout(cfg.rollout)
    spec = replace(spec, n=samples or spec.n)
    with open_engine(start_policy_dir(cfg), cfg) as engine, Verifier(cfg.verifier, seed=cfg.run.seed) as verifier:
        prompt_set = load_prompt_set(replace(cfg.data, balance_by_pass_rate=False), engine.tokenizer)
        prompts = prompt_set.prompts[:limit]
        rates, outcomes = estimate_pass_rates(prompts, engine, verifier, spec)
    write_prompt_file(out, prompts, rates)
    rate_tensor = torch.tensor(rates, dtype=torch.float64)
    repeats = difficulty_balance(rate_tensor, cfg.data.difficulty_bands).tolist()
    # Prompts per band: the balancer itself with that band alone, so the edges are the same.
    bands = tuple((f"[{low:g}, {high:g}{']' if high == 1.0 else ')'}",
                   int(difficulty_balance(rate_tensor, [(low, high, 1)]).sum()), repeat)
                  for low, high, repeat in sorted(cfg.data.difficulty_bands))
    return PrepareReport(out=str(out), prompts=len(prompts), samples_per_prompt=spec.n,
                         mean_pass_rate=sum(rates) / len(rates), outcomes=dict(outcomes), bands=bands,
                         balanced_prompts=int(sum(repeats)), dropped_prompts=sum(1 for k in repeats if k == 0),
                         seconds=round(time.perf_counter() - start, 2))
