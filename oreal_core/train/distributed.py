"""The process group the training stage runs in: one process on CPU, N under a launcher.

The `deepspeed` launcher and `torchrun` both export MASTER_ADDR/PORT, RANK, LOCAL_RANK and
WORLD_SIZE; a plain `python` process (tests, the CPU demo, a Prefect task) gets the
single-process defaults below, so the same code path runs everywhere. CPU uses gloo
(DeepSpeed's CPU accelerator), GPUs use NCCL.

The defaults go into os.environ (DeepSpeed reads and writes LOCAL_RANK & co. there), so
every child process inherits them. A child that trains (an `oreal` started by a run, a
test) must not take them for a launcher's and rendezvous on its parent's bound port: the
defaults are tagged with the pid and port that made them up; a process that finds another
pid's tag on the same port sets its own (a launcher below that parent sets another port, and
is trusted).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch
import torch.distributed as dist

from oreal_core.train.native_ops import use_environment_extensions


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEFAULTS_TAG = "OREAL_DIST_DEFAULTS"  # "<pid>:<port>" of the process that made up a one-process group


def _inherited_defaults() -> bool:
    """The rendezvous variables are a parent's made-up one-process group, not a launcher's."""
    pid, _, port = os.environ.get(DEFAULTS_TAG, "").partition(":")
    return bool(pid) and pid != str(os.getpid()) and os.environ.get("MASTER_PORT") == port


def init_process_group() -> None:
    """Join (or create) the default process group once per process."""
    if dist.is_available() and dist.is_initialized():
        return
    if _inherited_defaults():  # the parent still holds that port
        for name in ("MASTER_PORT", "WORLD_SIZE"):
            del os.environ[name]
    if "WORLD_SIZE" not in os.environ:  # not under a launcher: a one-process group on loopback
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        os.environ[DEFAULTS_TAG] = f"{os.getpid()}:{os.environ['MASTER_PORT']}"
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    use_environment_extensions()  # its CPU op, compiled at `make venv` (native_ops.py)
    import deepspeed  # imported late: DS_ACCELERATOR must be set before its first import

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def sum_floats(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over all ranks (token counts, metric sums); identity on one rank."""
    if world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device())
    dist.all_reduce(packed)
    return dict(zip(keys, packed.tolist(), strict=True))


def max_floats(values: dict[str, float]) -> dict[str, float]:
    """The largest of each value over all ranks; every rank must pass the same keys (absent = -inf)."""
    if world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    packed = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device())
    dist.all_reduce(packed, op=dist.ReduceOp.MAX)
    return dict(zip(keys, packed.tolist(), strict=True))


def max_int(value: int) -> int:
    """The largest ``value`` over all ranks."""
    if world_size() == 1:
        return value
    packed = torch.tensor([value], dtype=torch.long, device=device())
    dist.all_reduce(packed, op=dist.ReduceOp.MAX)
    return int(packed.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (small per-sample records only)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
