"""Out-of-memory failures that say which micro-batch did not fit and what to change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from oreal_core.train.batching import MicroBatch
from oreal_core.train.results import MicroBatchOutOfMemoryError

# CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError with one of these.
_CPU_OOM_MARKERS = ("not enough memory", "can't allocate memory", "DefaultCPUAllocator")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _CPU_OOM_MARKERS)


@contextmanager
def surface_oom(mb: MicroBatch, budget: int) -> Iterator[None]:
    """Re-raise an allocation failure as :class:`MicroBatchOutOfMemoryError` naming the size."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)):
            raise
        longest = int(mb.input_ids.shape[1])
        hint = (f"lower train.micro_batch_tokens (now {budget})" if len(mb.rows) > 1 else
                f"a single sample of {longest} tokens does not fit: lower rollout.max_length, or enable "
                "model.gradient_checkpointing / a higher train.zero_stage")
        raise MicroBatchOutOfMemoryError(f"out of memory on a {mb.describe()}: {hint}. ({exc})") from exc
