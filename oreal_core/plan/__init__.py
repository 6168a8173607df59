"""`oreal plan`: per-GPU memory of a run before any GPU is rented (issue 16, item 4).

What one GPU holds, as this code places it (oreal_core/train/trainer.py, models.py, engines.py):

* **actor** and **token RM**: DeepSpeed ZeRO engines around AdamW. Their model states
  (weights, gradients, optimizer states) are counted the way DeepSpeed's own estimators
  count them (``estimate_zero{2,3}_model_states_mem_needs``, the functions behind the
  printing ``*_all_cold`` helpers); ``plan`` keeps their figure next to ours and the tests
  assert the two agree. The RM is the policy's transformer plus a hidden -> 1 head.
* **reference**: frozen, weights only, in ``model.dtype``, and a *whole* copy on every rank
  (``build_reference`` moves it to the device; ZeRO never partitions it).
* **activations** of one micro-batch: an *estimate* (see :func:`activation_bytes`).
* **vLLM**: ``rollout.gpu_memory_utilization`` of each engine GPU, i.e. its weights / TP
  plus the KV cache vLLM fills the rest with.
* a fixed allowance for the CUDA context, NCCL buffers and allocator fragmentation.

Modules: ``arch`` (shapes from a config.json), ``memory`` (bytes of each item), ``budget``
(one setup's per-GPU table), ``advice`` (what to change), ``report`` (the printed text).
Everything is arithmetic on a config.json: no weights are loaded and nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math

from oreal_core.config import OrealConfig
from oreal_core.plan.advice import advice_for
from oreal_core.plan.arch import Arch, resolve_arch
from oreal_core.plan.budget import OFFLOADS, MemoryPlan, Setup, budget
from oreal_core.plan.errors import PlanInputError
from oreal_core.plan.memory import (
    GIB,
    ModelStates,
    activation_bytes,
    kv_bytes_per_token,
    model_states,
)
from oreal_core.plan.report import format_plan

__all__ = [
    "GIB",
    "OFFLOADS",
    "Arch",
    "MemoryPlan",
    "ModelStates",
    "PlanInputError",
    "Setup",
    "activation_bytes",
    "format_plan",
    "kv_bytes_per_token",
    "model_states",
    "plan",
    "resolve_arch",
]


def plan(cfg: OrealConfig, gpus: int, gpu_mem_gib: float, *, offload: str = "none",
         arch: tuple[Arch, Arch] | None = None, advise: bool = True) -> MemoryPlan:
    """The per-GPU memory of ``cfg`` on ``gpus`` GPUs of ``gpu_mem_gib`` GiB, with advice if it does not fit."""
    if gpus < 1:
        raise PlanInputError(f"--gpus {gpus}: must be >= 1")
    if not (math.isfinite(gpu_mem_gib) and gpu_mem_gib > 0):
        raise PlanInputError(f"--gpu-mem {gpu_mem_gib}: must be a positive number of GiB")
    if offload not in OFFLOADS:
        raise PlanInputError(f"offload {offload!r}: one of {OFFLOADS}")
    policy, reference = arch or resolve_arch(cfg)
    result = budget(Setup(cfg, gpus, offload), gpu_mem_gib * GIB, policy, reference)
    if advise and not result.fits:
        result = dataclasses.replace(result, advice=advice_for(result))
    return result
