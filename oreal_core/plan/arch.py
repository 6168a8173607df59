"""Shapes of the policy and the reference, read from a config.json: nothing is loaded or downloaded.

Where the config.json comes from, in order: ``--model-config``; the model folder itself; for a
checkpoint that is not on this machine, the copy checked in under configs/models/; for the tiny
policy, its cached SFT folder or else the spec it will be built from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from oreal_core.config import OrealConfig
from oreal_core.config.loading import CONFIG_DIR
from oreal_core.plan.errors import PlanInputError

KNOWN_MODELS = CONFIG_DIR / "models"  # <basename of model.policy, lower case>.config.json


@dataclass(frozen=True)
class Arch:
    """Shapes of a causal LM, read from its config.json; parameter counts are exact."""

    name: str
    source: str  # where the shapes came from, printed with the plan
    params: int
    largest_layer: int  # most parameters of one module (DeepSpeed ZeRO-3's gather buffer)
    rm_params: int  # the token RM: the transformer body plus a hidden -> 1 head
    rm_largest_layer: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int


def resolve_arch(cfg: OrealConfig, model_config: str | Path | None = None) -> tuple[Arch, Arch]:
    """(policy, reference) architectures. ``model_config`` overrides the policy's config.json."""
    if model_config is not None:
        path = Path(model_config)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise PlanInputError(f"--model-config {str(model_config)!r}: no such config.json")
        policy = _read_arch(path, f"--model-config {path}")
    else:
        policy = _find_arch(cfg, cfg.model.policy)
    reference = policy if cfg.model.reference is None else _find_arch(cfg, cfg.model.reference)
    return policy, reference


def _find_arch(cfg: OrealConfig, where: str) -> Arch:
    from oreal_core.models.sft import TINY

    if where == TINY:
        return _tiny_arch(cfg)
    path = Path(where)
    if (path / "config.json").is_file():
        return _read_arch(path / "config.json", str(path / "config.json"))
    known = KNOWN_MODELS / f"{path.name.lower()}.config.json"
    if path.name and known.is_file():
        # The production checkpoint lives on the cluster; its shapes are checked in.
        shown = known.relative_to(CONFIG_DIR.parent) if known.is_relative_to(CONFIG_DIR.parent) else known
        return _read_arch(known, f"{shown} ({where} is not on this machine)")
    raise PlanInputError(f"model {where!r}: no config.json there and no {known.name} in {KNOWN_MODELS}; "
                         "pass --model-config PATH/config.json")


def _tiny_arch(cfg: OrealConfig) -> Arch:
    """The SFT-warmed tiny policy: its cached config.json, else the spec it will be built from."""
    from oreal_core.models.sft import sft_cache_key
    from oreal_core.models.tiny import TinyModelSpec

    cached = Path(cfg.sft.cache_dir) / f"tiny-{sft_cache_key(cfg)}" / "config.json"
    if cached.is_file():
        return _read_arch(cached, f"the cached tiny policy {cached.parent}")
    spec = TinyModelSpec(vocab_size=cfg.sft.vocab_size)  # as oreal_core.models.tiny.build_model sets it
    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": spec.vocab_size,
              "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
              "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
              "num_key_value_heads": spec.num_kv_heads, "tie_word_embeddings": False,
              "max_position_embeddings": spec.max_position_embeddings}
    # Not built yet: BPE may learn fewer merges than sft.vocab_size, so the vocab is an upper bound.
    return _arch_from_json(json.dumps(config), f"TinyModelSpec (not built yet; vocab {spec.vocab_size} is "
                                                "sft.vocab_size, an upper bound)")


def _read_arch(path: Path, source: str) -> Arch:
    return _arch_from_json(path.read_text(encoding="utf-8"), source)


@lru_cache(maxsize=16)
def _arch_from_json(text: str, source: str) -> Arch:
    """Build the model on PyTorch's meta device: exact parameter counts, no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        raw = json.loads(text)
        config = AutoConfig.for_model(raw.pop("model_type"), **raw)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # bad JSON, no model_type, an architecture transformers lacks
        raise PlanInputError(f"{source}: not a usable HF config.json ({type(exc).__name__}: {exc})") from None
    body = model.base_model

    def largest(module: torch.nn.Module) -> int:  # as deepspeed.runtime.zero.stage3.model_to_params
        return max(sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules())

    hidden, heads = int(config.hidden_size), int(config.num_attention_heads)
    return Arch(
        name=(getattr(config, "architectures", None) or [type(model).__name__])[0], source=source,
        params=sum(p.numel() for p in model.parameters()),  # parameters() yields a tied weight once
        largest_layer=largest(model),
        rm_params=sum(p.numel() for p in body.parameters()) + hidden, rm_largest_layer=max(largest(body), hidden),
        hidden=hidden, layers=int(config.num_hidden_layers), intermediate=int(config.intermediate_size),
        vocab=int(config.vocab_size), heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(config, "head_dim", None) or hidden // heads))
