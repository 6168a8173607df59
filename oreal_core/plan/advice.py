"""What to change when a setup does not fit: single changes first, else combined recipes.

A knob turns a setup into candidate setups (a description for the user and the changed
setup), mildest first; each candidate is planned again with the same architectures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from oreal_core.config.schema import ConfigError
from oreal_core.plan.budget import MemoryPlan, Setup, budget
from oreal_core.plan.errors import PlanInputError
from oreal_core.plan.memory import GIB

Candidate = tuple[str, Setup]
Knob = Callable[[Setup], Iterator[Candidate]]

GPU_COUNTS = (2, 4, *range(8, 1025, 8))


def _set(setup: Setup, key: str, value: object) -> Candidate:
    """``setup`` with the config key ``section.name`` set to ``value``, shown as ``--set`` would take it."""
    section, name = key.split(".")
    cfg = dataclasses.replace(setup.cfg, **{section: dataclasses.replace(getattr(setup.cfg, section),
                                                                         **{name: value})})
    shown = str(value).lower() if isinstance(value, bool) else value  # as --set parses it back (YAML)
    return f"--set {key}={shown}", dataclasses.replace(setup, cfg=cfg)


def _zero3(s: Setup) -> Iterator[Candidate]:
    if s.cfg.train.zero_stage < 3:
        yield _set(s, "train.zero_stage", 3)


def _checkpointing(s: Setup) -> Iterator[Candidate]:
    if not s.cfg.model.gradient_checkpointing:
        yield _set(s, "model.gradient_checkpointing", True)


def _sleep(s: Setup) -> Iterator[Candidate]:
    if s.cfg.rollout.engine == "vllm" and s.cfg.rollout.colocation == "shared":
        yield _set(s, "rollout.colocation", "sleep")


def _disjoint(s: Setup) -> Iterator[Candidate]:
    if s.cfg.rollout.engine == "vllm" and s.cfg.rollout.colocation != "disjoint":
        yield _set(s, "rollout.colocation", "disjoint")


def _micro_batch(s: Setup) -> Iterator[Candidate]:
    """Smaller micro-batches, mildest first, down to rollout.max_length (the longest sample's own)."""
    now, floor = s.cfg.train.micro_batch_tokens, s.cfg.rollout.max_length
    for tokens in range((now - 1) // 1024 * 1024, floor, -1024):
        yield _set(s, "train.micro_batch_tokens", tokens)
    if now > floor:
        yield _set(s, "train.micro_batch_tokens", floor)


def _offload_optimizer(s: Setup) -> Iterator[Candidate]:
    if s.offload == "none" and s.cfg.train.zero_stage >= 1:
        yield "DeepSpeed offload_optimizer=cpu", dataclasses.replace(s, offload="optimizer")


def _offload_params(s: Setup) -> Iterator[Candidate]:
    if s.offload != "optimizer+params" and s.cfg.train.zero_stage == 3:
        yield "DeepSpeed offload_param=cpu", dataclasses.replace(s, offload="optimizer+params")


def _utilization(s: Setup) -> Iterator[Candidate]:
    """Another vLLM share, nearest the current one first (down frees the trainer, up grows KV)."""
    now = s.cfg.rollout.gpu_memory_utilization
    for u in sorted((round(0.05 * k, 2) for k in range(1, 20)), key=lambda u: (abs(u - now), -u)):
        if s.cfg.rollout.engine == "vllm" and abs(u - now) > 1e-9:
            yield _set(s, "rollout.gpu_memory_utilization", u)


def _tensor_parallel(s: Setup) -> Iterator[Candidate]:
    tp = s.cfg.rollout.tensor_parallel_size
    while s.cfg.rollout.engine == "vllm" and tp < 8:
        tp *= 2
        yield _set(s, "rollout.tensor_parallel_size", tp)


def _more_gpus(s: Setup) -> Iterator[Candidate]:
    for g in GPU_COUNTS:
        if g > s.gpus:
            yield f"--gpus {g}", dataclasses.replace(s, gpus=g)


def _more_gpus_and_utilization(s: Setup) -> Iterator[Candidate]:
    for desc, more in _more_gpus(s):
        yield desc, more
        for udesc, both in _utilization(more):
            if both.cfg.rollout.gpu_memory_utilization < s.cfg.rollout.gpu_memory_utilization:
                yield f"{desc}, {udesc}", both


SINGLE: tuple[Knob, ...] = (_zero3, _checkpointing, _micro_batch, _offload_optimizer, _offload_params, _sleep,
                            _disjoint, _utilization, _tensor_parallel, _more_gpus)
# Recipes change one knob after another and stop as soon as the setup fits. A knob's mildest
# fitting value is taken; failing that its strongest value is kept if it helps, except for
# searches where "strongest" means nothing (fit_only: kept only when they fit).
RECIPES: tuple[tuple[str, tuple[tuple[Knob, bool], ...]], ...] = (
    ("without offload", ((_zero3, False), (_checkpointing, False), (_sleep, False), (_micro_batch, False),
                         (_utilization, True), (_more_gpus_and_utilization, True))),
    ("with CPU offload", ((_zero3, False), (_checkpointing, False), (_sleep, False), (_micro_batch, False),
                          (_offload_optimizer, False), (_utilization, True), (_offload_params, False),
                          (_utilization, True))),
)


def _shortfall(p: MemoryPlan) -> float:
    """Bytes missing over all columns, plus the KV cache vLLM lacks for one rollout.max_length sequence."""
    need = sum(max(0.0, t - p.gpu_mem) for t in p.totals)
    if p.engine_gpus:
        need += max(0, p.setup.cfg.rollout.max_length - p.kv_tokens) * p.kv_token_bytes
    return need


def advice_for(base: MemoryPlan) -> tuple[str, ...]:
    """Lines of advice for a plan that does not fit: each single change that fits, else the recipes."""

    def evaluate(candidates: Iterator[Candidate]) -> Iterator[tuple[str, MemoryPlan]]:
        for desc, setup in candidates:
            try:
                yield desc, budget(setup, base.gpu_mem, base.policy, base.reference)
            except (ConfigError, PlanInputError):  # a value the config or the placement refuses
                continue

    def first_fit(knob: Knob, setup: Setup) -> tuple[str, MemoryPlan] | None:
        return next(((d, p) for d, p in evaluate(knob(setup)) if p.fits), None)

    singles = []
    for knob in SINGLE:
        if hit := first_fit(knob, base.setup):
            singles.append(f"{hit[0]}  (peak {hit[1].peak / GIB:.1f} GiB)")
    if singles:
        return ("any one of these fits:", *singles)
    lines, seen = ["no single change fits; combined:"], []
    for title, knobs in RECIPES:
        current, steps = base, []
        for knob, fit_only in knobs:
            hit = first_fit(knob, current.setup)
            if hit is None and not fit_only:
                tried = list(evaluate(knob(current.setup)))
                hit = tried[-1] if tried and _shortfall(tried[-1][1]) < _shortfall(current) else None
            if hit:
                steps.append(hit[0])
                current = hit[1]
            if current.fits:
                break
        if steps in seen:  # the offload recipe fitted before reaching an offload
            continue
        seen.append(steps)
        verdict = f"fits, peak {current.peak / GIB:.1f} GiB" if current.fits else "still does not fit"
        lines.append(f"{title}: {', '.join(steps) or '(nothing helps)'}  ({verdict})")
    return tuple(lines)
