"""The rollout stage: K samples per prompt from the current policy (vLLM or HF engine)."""

from __future__ import annotations

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


def _open_vllm(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    from oreal_core.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(model_dir, cfg.rollout, dtype=_dtype(cfg))


def _open_hf(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    from oreal_core.rollout.hf_engine import HFEngine

    return HFEngine(model_dir, stop_word=cfg.rollout.stop_word)


ENGINES = {"vllm": _open_vllm, "hf": _open_hf}


def _dtype(cfg: OrealConfig) -> str:
    return "auto" if cfg.model.dtype == "auto" else cfg.model.dtype


def open_engine(model_dir: str | Path, cfg: OrealConfig) -> RolloutEngine:
    """The engine named by ``rollout.engine`` on the policy in ``model_dir``.

    Open it once per run and call ``reload_weights`` after each training step.
    """
    return ENGINES[cfg.rollout.engine](model_dir, cfg)
