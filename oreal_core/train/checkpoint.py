"""Checkpoints: HF-format actor weights every step, full training state every N steps.

Layout under a checkpoint root (a local directory; see :class:`CheckpointSink` for
object stores)::

    <root>/hf/step=000004/     model.safetensors, config.json, tokenizer files (vLLM loads it)
    <root>/state/step=000009/  actor/ rm/ (DeepSpeed: weights, optimiser), rng/rank<r>.pt,
                               trainer_state.json (step, config hash + config, model fingerprint)

Every directory is written under a temporary name and renamed into place when complete,
so a crash never leaves a half-written checkpoint under a final name. Resuming refuses a
state whose config hash, start-model fingerprint or world size differs from this run's,
listing what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from oreal_core.train import distributed
from oreal_core.train.results import CheckpointMismatchError

STATE_FILE = "trainer_state.json"
# Files of the start policy that are not weights: copied next to every HF checkpoint so
# the directory is a complete model for vLLM/transformers (tokenizer, chat template, ...).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


class CheckpointSink(Protocol):
    """Where a finished local checkpoint directory is published (local: nowhere else;
    the lake's S3 store uploads it and returns its ``s3://`` URI)."""

    def publish(self, local_dir: Path, name: str) -> str: ...


class LocalSink:
    def publish(self, local_dir: Path, name: str) -> str:
        return str(local_dir)


class CheckpointLayout:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def hf_dir(self, step: int) -> Path:
        return self.root / "hf" / f"step={step:06d}"

    def state_dir(self, step: int) -> Path:
        return self.root / "state" / f"step={step:06d}"

    def latest_state(self, before: int | None = None) -> Path | None:
        """The newest complete full-state checkpoint (temporary directories are ignored),
        of a step < ``before`` if given."""
        done = [p for p in (self.root / "state").glob("step=*") if (p / STATE_FILE).is_file()
                and (before is None or int(p.name.split("=")[1]) < before)]
        return max(done, key=lambda p: p.name) if done else None


    def prune_hf(self, keep_last: int, keep_every: int) -> list[Path]:
        """Delete HF checkpoints beyond the newest ``keep_last`` (0 = keep all), sparing
        every ``keep_every``-th step (evaluation picks among those); returns what went."""
        if keep_last <= 0:
            return []
        done = sorted(p for p in (self.root / "hf").glob("step=*") if p.is_dir())
        doomed = [p for p in done[:-keep_last]
                  if not (keep_every > 0 and (int(p.name.split("=")[1]) + 1) % keep_every == 0)]
        for path in doomed:
            shutil.rmtree(path)
        return doomed


def staging_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def publish_dir(tmp: Path, final: Path) -> None:
    """Atomically replace ``final`` by the finished ``tmp`` (rank 0 only)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def model_fingerprint(path: str | Path) -> str:
    """Identity of a start model: its config plus, per weight file, size and a digest of
    the first and last MiB (hashing a 15 GB checkpoint in full would cost a minute)."""
    path = Path(path)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as fh:
            digest.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def copy_model_files(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name != "config.json":
            shutil.copy2(item, dst / item.name)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def read_state_meta(state_dir: Path) -> dict[str, Any]:
    meta_path = state_dir / STATE_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{state_dir}: not a complete training-state checkpoint (no {STATE_FILE})")
    return json.loads(meta_path.read_text())


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = _flatten(saved), _flatten(current)
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_compatible(meta: dict[str, Any], expected: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint from another config, start model or world size, saying what differs."""
    problems = []
    if meta["config_hash"] != expected["config_hash"]:
        diff = config_differences(meta["config"], expected["config"])
        problems.append(f"config hash {meta['config_hash']} != this run's {expected['config_hash']} "
                        f"(differs: {'; '.join(diff[:10]) or 'unknown'})")
    if meta["model_fingerprint"] != expected["model_fingerprint"]:
        problems.append(f"start model {meta['policy']} (fingerprint {meta['model_fingerprint']}) != this run's "
                        f"{expected['policy']} (fingerprint {expected['model_fingerprint']})")
    if meta["world_size"] != expected["world_size"]:
        problems.append(f"world size {meta['world_size']} != this run's {expected['world_size']} "
                        "(ZeRO partitions are per rank)")
    if problems:
        raise CheckpointMismatchError(f"refusing to resume from {where}: " + "; ".join(problems))


def save_rng(state_dir: Path) -> None:
    rng_dir = state_dir / "rng"
    rng_dir.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), rng_dir / f"rank{distributed.rank()}.pt")


def load_rng(state_dir: Path) -> None:
    path = state_dir / "rng" / f"rank{distributed.rank()}.pt"
    set_rng_state(torch.load(path, weights_only=False))


def actor_state_dict(engine: Any, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """The HF model's full state dict (gathered under ZeRO-3), on rank 0; None elsewhere."""
    if zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # collective: every rank calls it
    else:
        state = engine.module.state_dict()
    if distributed.rank() != 0:
        return None
    # The engine wraps the HF model as ``ResponseLogProbs.model``.
    return {k.removeprefix("model."): v.detach().cpu().contiguous() for k, v in state.items()}


def save_hf_actor(engine: Any, zero_stage: int, policy_dir: Path, final: Path) -> None:
    """Write the actor as a complete HF model directory (safetensors + config + tokenizer)."""
    state = actor_state_dict(engine, zero_stage)
    if distributed.rank() == 0:
        tmp = staging_dir(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        engine.module.model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        copy_model_files(policy_dir, tmp)
        publish_dir(tmp, final)
    distributed.barrier()


def save_full_state(engines: dict[str, Any], meta: dict[str, Any], final: Path) -> None:
    """DeepSpeed state of every engine (weights, optimiser), RNG of every rank, and meta."""
    tmp = staging_dir(final)
    if distributed.rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    for name, engine in engines.items():
        engine.save_checkpoint(str(tmp / name), tag="state", save_latest=False)
    save_rng(tmp)
    distributed.barrier()
    if distributed.rank() == 0:
        write_json(tmp / STATE_FILE, meta)  # written last: its presence marks the state complete
        publish_dir(tmp, final)
    distributed.barrier()


def load_full_state(engines: dict[str, Any], state_dir: Path) -> None:
    for name, engine in engines.items():
        path, _ = engine.load_checkpoint(str(state_dir / name), tag="state", load_optimizer_states=True,
                                         load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"{state_dir / name}: DeepSpeed found no checkpoint to load")
    load_rng(state_dir)
