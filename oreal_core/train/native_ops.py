"""DeepSpeed's compiled CPU op, built once per environment instead of at a run's first step.

On CPU, ``deepspeed.init_distributed`` JIT-compiles its shared-memory all-reduce
(``deepspeed_shm_comm``, ~24 s on two cores) through torch's extension builder. Torch keeps
builds in one folder per user (``~/.cache/torch_extensions/py311_cpu``) and ninja rebuilds
whenever the include paths change, so every checkout with its own ``.venv`` (a fresh clone,
a CI workspace) recompiled it inside its first run, and the next run of the other checkout
recompiled it again. Here the build lives in the environment it was compiled against
(``<sys.prefix>/torch_extensions``), and ``make venv`` builds it: ``python -m
oreal_core.train.native_ops``. Where the environment is not writable (a system
interpreter), torch's own folder is used, as before.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def environment_extensions_dir() -> Path | None:
    """Where this environment's compiled torch extensions live (None: not writable)."""
    prefix = Path(sys.prefix)
    return prefix / "torch_extensions" if os.access(prefix, os.W_OK) else None


def use_environment_extensions() -> None:
    """Point torch's extension builder at this environment's folder, unless the user chose one."""
    folder = environment_extensions_dir()
    if folder is not None:
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(folder))


def build_shm_op() -> str:
    """Compile (or find compiled) DeepSpeed's CPU shared-memory op; returns what was done."""
    use_environment_extensions()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator
    from deepspeed.ops import __compatible_ops__ as compatible

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not compatible.get(builder.NAME, False):
        return "DeepSpeed's shm op: not used with this accelerator, nothing to build"
    start = time.perf_counter()
    builder.load(verbose=False)
    where = os.environ.get("TORCH_EXTENSIONS_DIR", "torch's default folder")
    return f"DeepSpeed's shm op ready in {where} ({time.perf_counter() - start:.1f} s)"


if __name__ == "__main__":
    print(build_shm_op())
