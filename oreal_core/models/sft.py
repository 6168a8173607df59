"""SFT warm-up: teach the tiny policy the synthetic task until it solves some of it.

OREAL learns only from prompts whose pass rate lies strictly between 0 and 1, so RL needs a
start policy that solves part of the task. Supervised training on worked solutions stops
at the first held-out check whose greedy pass@1 reaches ``sft.target_pass1`` (the demo
wants ~25-40 %, leaving room for RL to gain). The trained policy is cached under
``sft.cache_dir`` by a hash of everything that shapes it (settings and the recipe's source):
a second run reuses it, and a fresh clone starts from the copy shipped with the code
(models/shipped.py) when the key matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from oreal_core.config import OrealConfig
from oreal_core.data.chat import chat_text
from oreal_core.data.synthetic import GENERATOR, Problem, is_correct
from oreal_core.data.tasks import synthetic_splits
from oreal_core.models.shipped import install_policy, shipped_policy
from oreal_core.models.tiny import TinyModelSpec, build_model, build_tokenizer, save_policy
from oreal_core.rollout.base import SamplingSpec
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.rollout.policy_dir import check_model_dir

log = logging.getLogger(__name__)

REPORT_FILE = "sft_report.json"
TINY = "tiny"  # model.policy value that means "the locally built, SFT-warmed tiny policy"
SFT_FORMAT = 1  # bump when the training recipe changes: it invalidates cached policies
# The modules whose code shapes the policy (relative to oreal_core/): their source is in the
# cache key, so a cached or shipped policy is never reused for a changed recipe.
RECIPE_SOURCES = ("models/sft.py", "models/tiny.py", "data/synthetic.py", "data/tasks.py", "data/chat.py")


@dataclass(frozen=True)
class SFTReport:
    """Where the warmed-up policy is and how good it is on held-out problems."""

    policy_dir: str
    cache_key: str
    cached: bool  # True when an earlier run's policy was reused
    steps: int
    train_s: float
    heldout_pass1: float  # greedy, exact answer match, on all held-out problems
    heldout_size: int
    checks: tuple[tuple[int, float], ...] = field(default_factory=tuple)  # (step, pass@1 on the check subset)
    num_params: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sft_cache_key(cfg: OrealConfig) -> str:
    """Digest of every setting that changes the SFT result (not where it is cached)."""
    shaping = {
        "format": SFT_FORMAT,
        "generator": GENERATOR,
        "task": dataclasses.asdict(cfg.data.synthetic),
        "sft": {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k not in ("cache_dir", "torch_threads")},
        "model": dataclasses.asdict(TinyModelSpec(vocab_size=cfg.sft.vocab_size)),
        "system_prompt": cfg.data.system_prompt,
        "stop_word": cfg.rollout.stop_word,
        "seed": cfg.run.seed,
        "recipe": _recipe_digest(),
    }
    blob = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _recipe_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in RECIPE_SOURCES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def start_policy_dir(cfg: OrealConfig) -> Path:
    """The RL start policy: the SFT-warmed tiny policy for ``model.policy: tiny``, else the path."""
    if cfg.model.policy == TINY:
        return Path(run_sft(cfg).policy_dir)
    check_model_dir(cfg.model.policy, "model.policy")
    return Path(cfg.model.policy)


def run_sft(cfg: OrealConfig, *, use_shipped: bool = True) -> SFTReport:
    """The cached SFT policy for ``cfg``: reused if present, else copied from the shipped one
    of the same key, else trained and committed (``use_shipped=False``: never copied)."""
    if cfg.model.policy != TINY:
        raise ValueError(f"model.policy={cfg.model.policy!r}: SFT warm-up builds the tiny policy only "
                         "(set model.policy=tiny); a real checkpoint is already instruction-tuned")
    key = sft_cache_key(cfg)
    root = Path(cfg.sft.cache_dir)
    final = root / f"tiny-{key}"
    shipped = shipped_policy(final.name) if use_shipped else None
    if shipped and not (final / REPORT_FILE).is_file():
        log.info("SFT policy %s: the copy shipped with the code (no warm-up)", final.name)
        root.mkdir(parents=True, exist_ok=True)
        install_policy(shipped, final)
    if (final / REPORT_FILE).is_file():
        saved = json.loads((final / REPORT_FILE).read_text())
        saved["checks"] = tuple(tuple(c) for c in saved["checks"])
        return dataclasses.replace(SFTReport(**saved), policy_dir=str(final), cached=True)
    log.info("SFT warm-up of the tiny policy (up to %d steps, until held-out pass@1 >= %.2f); cached as %s",
             cfg.sft.max_steps, cfg.sft.target_pass1, final)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    threads = torch.get_num_threads()
    try:
        if cfg.sft.torch_threads:
            torch.set_num_threads(cfg.sft.torch_threads)
        report = dataclasses.replace(train_tiny_policy(cfg, staging), policy_dir=str(final), cache_key=key)
        (staging / REPORT_FILE).write_text(json.dumps(report.as_dict(), indent=2))
        if not final.exists():  # commit: a reader sees a complete policy or none
            os.replace(staging, final)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(staging, ignore_errors=True)
    return report


def train_tiny_policy(cfg: OrealConfig, out_dir: Path) -> SFTReport:
    """Build the tokenizer and model, train to the target pass@1, save into ``out_dir``."""
    torch.manual_seed(cfg.run.seed)
    train, heldout = synthetic_splits(cfg.data.synthetic)
    tokenizer = build_tokenizer((p.question + "\n" + p.solution for p in train[:5000]), cfg.sft.vocab_size)
    model = build_model(tokenizer, TinyModelSpec(vocab_size=cfg.sft.vocab_size), cfg.run.seed)
    examples = _encode_examples(tokenizer, train, cfg)
    budget = max(len(response) for _, response in _encode_examples(tokenizer, heldout, cfg)) + 8
    check = SamplingSpec.greedy(budget, cfg.rollout.max_length, cfg.rollout.stop_word)
    start = time.perf_counter()
    steps, checks = _train_loop(model, tokenizer, examples, heldout[:cfg.sft.check_size], check, cfg)
    train_s = time.perf_counter() - start
    pass1 = heldout_pass1(model, tokenizer, heldout, check, cfg.data.system_prompt)
    save_policy(model, tokenizer, out_dir)
    return SFTReport(policy_dir=str(out_dir), cache_key="", cached=False, steps=steps, train_s=round(train_s, 2),
                     heldout_pass1=pass1, heldout_size=len(heldout), checks=tuple(checks),
                     num_params=sum(p.numel() for p in model.parameters()))


def _encode_examples(tokenizer: PreTrainedTokenizerFast, problems: list[Problem],
                     cfg: OrealConfig) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) pairs; the response ends with the stop token."""
    prompts = [chat_text(tokenizer, p.question, cfg.data.system_prompt) for p in problems]
    responses = [p.solution + cfg.rollout.stop_word for p in problems]
    encode = tokenizer(prompts + responses, add_special_tokens=False)["input_ids"]
    return list(zip(encode[:len(problems)], encode[len(problems):], strict=True))


def _train_loop(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, examples: list[tuple[list[int], list[int]]],
                check_set: list[Problem], check: SamplingSpec, cfg: OrealConfig) -> tuple[int, list[tuple[int, float]]]:
    """AdamW with warm-up then cosine decay; stops at the first check that reaches the target."""
    sft = cfg.sft
    optimizer = torch.optim.AdamW(model.parameters(), lr=sft.lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, sft.warmup_steps, sft.max_steps))
    order = torch.Generator().manual_seed(cfg.run.seed)
    checks: list[tuple[int, float]] = []
    for step in range(1, sft.max_steps + 1):
        model.train()
        picks = torch.randint(len(examples), (sft.batch_size,), generator=order).tolist()
        loss = model(**_collate([examples[i] for i in picks], tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % sft.check_every == 0 or step == sft.max_steps:
            checks.append((step, heldout_pass1(model, tokenizer, check_set, check, cfg.data.system_prompt)))
            log.info("sft step %d: loss %.4f, held-out check pass@1 %.3f", step, loss.item(), checks[-1][1])
            if checks[-1][1] >= sft.target_pass1:
                return step, checks
    return sft.max_steps, checks


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids; the loss covers response tokens (stop token included) only."""
    width = max(len(p) + len(r) for p, r in batch)
    ids, labels, mask = [], [], []
    for prompt, response in batch:
        pad = width - len(prompt) - len(response)
        ids.append(prompt + response + [pad_id] * pad)
        labels.append([-100] * len(prompt) + response + [-100] * pad)
        mask.append([1] * (len(prompt) + len(response)) + [0] * pad)
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def heldout_pass1(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, problems: list[Problem],
                  spec: SamplingSpec, system_prompt: str = "") -> float:
    """Greedy pass@1 with exact answer match, sampled through the HF rollout engine."""
    model.eval()
    engine = HFEngine.from_model(model, tokenizer, spec.stop_word, prompts_per_batch=256)
    prompts = [synthetic_prompt(p, tokenizer, system_prompt) for p in problems]
    result = engine.generate(prompts, spec)
    by_id = {p.problem_id: p for p in problems}
    return sum(is_correct(s.response, by_id[s.prompt_id]) for s in result.samples) / len(problems)


def synthetic_prompt(problem: Problem, tokenizer: PreTrainedTokenizerFast, system_prompt: str = ""):
    from oreal_core.types import Prompt

    return Prompt(problem.problem_id, problem.question, problem.answer,
                  chat_text(tokenizer, problem.question, system_prompt), source=problem.source)
