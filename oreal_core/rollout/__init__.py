"""The rollout stage: K samples per prompt from the current policy (vLLM or HF engine)."""

from __future__ import annotations

import logging
from pathlib import Path

from oreal_core.config import OrealConfig
from oreal_core.rollout.base import (
    RolloutEngine,
    RolloutEngineError,
    RolloutInputError,
    RolloutResult,
    SamplingSpec,
)

__all__ = ["RolloutEngine", "RolloutEngineError", "RolloutInputError", "RolloutResult", "SamplingSpec",
           "open_engine"]

log = logging.getLogger(__name__)


def _open_vllm(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    from oreal_core.rollout.cpu_threads import engine_core_lists
    from oreal_core.rollout.devices import plan_engine_devices, vllm_on_cpu
    from oreal_core.rollout.engine_group import open_group
    from oreal_core.rollout.vllm_engine import VLLMEngine

    devices = plan_engine_devices(cfg.rollout)  # a split that does not fit fails before any start
    cores = engine_core_lists(cfg.rollout.cpu_threads, len(devices)) if vllm_on_cpu() else [None] * len(devices)

    def engine(i: int) -> VLLMEngine:
        return VLLMEngine(model_dir, cfg.rollout, dtype=_dtype(cfg), devices=devices[i], cpu_cores=cores[i])

    return engine(0) if len(devices) == 1 else open_group(engine, len(devices))


def _open_hf(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    from oreal_core.rollout.hf_engine import HFEngine

    if cfg.rollout.engines != 1:
        # HF samples on this process's CPU with one torch RNG: more engines would run one after
        # the other, and its per-batch seeds would make the samples depend on the split.
        raise RolloutEngineError(f"rollout.engines={cfg.rollout.engines} needs rollout.engine=vllm; the HF engine "
                                 "runs as one engine")
    return HFEngine(model_dir, stop_word=cfg.rollout.stop_word)


ENGINES = {"vllm": _open_vllm, "hf": _open_hf}


def _dtype(cfg: OrealConfig) -> str:
    return "auto" if cfg.model.dtype == "auto" else cfg.model.dtype


def open_engine(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    """The engine named by ``rollout.engine`` on the policy in ``model_dir``.

    With ``rollout.engines`` > 1, an :class:`~oreal_core.rollout.engine_group.EngineGroup` of
    that many vLLM engines on their own devices (``rollout.colocation``, see
    :mod:`oreal_core.rollout.devices`). Open it once per run and call ``reload_weights`` or
    ``load_weights`` after each training step.
    """
    log.info("starting the %s rollout engine%s on %s", cfg.rollout.engine,
             f"s (x{cfg.rollout.engines})" if cfg.rollout.engines > 1 else "", model_dir)
    return ENGINES[cfg.rollout.engine](model_dir, cfg)
