"""Several rollout engines side by side (``rollout.engines``): data parallel over whole prompts.

A step's prompts are split into contiguous shards of whole prompts, one per engine, so each
prompt's K samples are one request to one engine. The engines sample their shards at the
same time and the groups come back in shard order, which is the original prompt order, so
the samples are keyed (prompt_id, sample_idx) exactly as one engine would key them. vLLM
seeds every prompt alone from (seed, prompt_id), so the artefact does not depend on the
engine count (the HF engine seeds per batch of prompts, so it does only where each prompt is
its own batch; ``open_engine`` refuses HF with several engines).

Threads are enough for the concurrency: vLLM V1 runs each engine's EngineCore in its own
process and the calling thread only waits on its output queue. Engines that sample in this
process (HF) run one after the other instead (one torch RNG, the same cores).

Prompts are tokenised and checked once, for the whole step, before any engine samples; the
Sample records are built here, once, from the merged groups (:meth:`RolloutEngine.generate`).
So ``generate_s`` is the wall time of the slowest shard, and the token counts are those of
all shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import torch

from oreal_core.rollout.base import RolloutEngine, RolloutEngineError, SamplingSpec
from oreal_core.types import Prompt

T = TypeVar("T")


def shard_bounds(num_prompts: int, num_engines: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) shards, sizes differing by at most one; empty shards left out."""
    size, extra = divmod(num_prompts, num_engines)
    bounds, start = [], 0
    for i in range(num_engines):
        stop = start + size + (1 if i < extra else 0)
        if stop > start:
            bounds.append((start, stop))
        start = stop
    return bounds


def open_group(open_one: Callable[[int], RolloutEngine], count: int) -> EngineGroup:
    """Open engines 0..count-1 one at a time; if one fails, close those already open and re-raise.

    One at a time: each start takes the host's cores and memory for a while, and on older
    vLLM a start narrows CUDA_VISIBLE_DEVICES for its duration (see devices.placed_on).
    """
    engines: list[RolloutEngine] = []
    try:
        for index in range(count):
            engines.append(open_one(index))
        return EngineGroup(engines)
    except BaseException:
        for engine in reversed(engines):
            with suppress(Exception):  # the open error is the one to report
                engine.close()
        raise


class EngineGroup(RolloutEngine):
    """The :class:`RolloutEngine` interface over several engines of the same policy."""

    def __init__(self, engines: Sequence[RolloutEngine]) -> None:
        if not engines:
            raise ValueError("an engine group needs at least one engine")
        first = engines[0]
        if any(e.name != first.name or e.stop_word != first.stop_word for e in engines):
            raise ValueError("an engine group's engines must be of one kind and stop word")
        self.engines = list(engines)
        self.name = first.name  # the artefact records the engine kind, not the count
        super().__init__(first.tokenizer, first.context_length, first.stop_word)

    @property
    def policy_version(self) -> int:
        return self._policy_version

    @policy_version.setter
    def policy_version(self, version: int) -> None:
        # Callers also set it directly (an engine opened on step s's weights): keep members in step.
        self._policy_version = version
        for engine in self.engines:
            engine.policy_version = version

    @property
    def samples_out_of_process(self) -> bool:
        return all(engine.samples_out_of_process for engine in self.engines)

    def _sample(self, prompts: Sequence[Prompt], token_ids: Sequence[tuple[int, ...]],
                spec: SamplingSpec) -> list[list[tuple[Sequence[int], Sequence[float]]]]:
        bounds = shard_bounds(len(prompts), len(self.engines))
        shards = [(engine, start, stop) for engine, (start, stop) in zip(self.engines, bounds, strict=False)]
        groups = self._each(shards, lambda shard: shard[0]._sample(
            prompts[shard[1]:shard[2]], token_ids[shard[1]:shard[2]], spec))
        merged = []
        for (_, start, stop), shard_groups in zip(shards, groups, strict=True):
            if len(shard_groups) != stop - start:  # an engine must answer every prompt of its shard
                raise RolloutEngineError(f"an engine returned {len(shard_groups)} prompts for a shard of "
                                         f"{stop - start}")
            merged.extend(shard_groups)
        return merged

    def reload_weights(self, model_dir: str | Path, policy_version: int) -> None:
        self._each(self.engines, lambda engine: engine.reload_weights(model_dir, policy_version))
        self.policy_version = policy_version

    def load_weights(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> None:
        # One engine at a time, never in threads: each vLLM load packs its own host copy of the
        # weights (~15 GB at 7B), so this bounds host memory to one copy.
        for index, engine in enumerate(self.engines):
            with _naming(index, len(self.engines)):
                engine.load_weights(weights, policy_version)
        self.policy_version = policy_version

    def sleep(self) -> None:
        self._each(self.engines, lambda engine: engine.sleep())

    def wake(self) -> None:
        self._each(self.engines, lambda engine: engine.wake())

    @property
    def alive(self) -> bool:
        return all(engine.alive for engine in self.engines)

    def close(self) -> None:
        """Close every engine, even when one fails to, then raise the first failure. At once where
        they run out of process: vLLM waits up to 5 s for each EngineCore to exit."""
        self._each(self.engines, lambda engine: engine.close())

    def _each(self, items: Sequence[T], call: Callable[[T], object]) -> list:
        """``call`` on each item (engine i's work), at once where the engines sample out of process.

        Every call runs to its end before a failure is raised: a vLLM call cannot be cancelled,
        and returning while one is still in flight would let the next step race it.
        """
        if not self.samples_out_of_process or len(items) == 1:
            results = []
            for index, item in enumerate(items):
                with _naming(index, len(self.engines)):
                    results.append(call(item))
            return results
        with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="oreal-rollout") as pool:
            futures = [pool.submit(call, item) for item in items]
        for index, future in enumerate(futures):  # the pool has joined: all are done
            if future.exception() is not None:
                with _naming(index, len(self.engines)):
                    future.result()
        return [future.result() for future in futures]


@contextmanager
def _naming(index: int, count: int) -> Iterator[None]:
    """An engine's RolloutEngineError, re-raised naming the engine (which one died or failed)."""
    try:
        yield
    except RolloutEngineError as exc:
        raise RolloutEngineError(f"rollout engine {index} of {count}: {exc}") from exc
