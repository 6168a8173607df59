"""Checks on a policy directory made before an engine loads it (clear errors, not tracebacks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import transformers
from transformers import PreTrainedTokenizerFast
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from oreal_core.models.tiny import load_tokenizer
from oreal_core.rollout.base import RolloutInputError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class PolicyInfo:
    """What the engines need to know about a policy before loading its weights."""

    path: Path
    architecture: str
    head_dim: int
    vocab_size: int
    context_length: int  # max_position_embeddings


def inspect_policy_dir(model_dir: str | Path) -> PolicyInfo:
    path = Path(model_dir)
    if not path.is_dir():
        raise RolloutInputError(f"policy {path}: not a directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise RolloutInputError(f"policy {path}: no config.json (expected an HF-format model directory)")
    missing = [name for name in TOKENIZER_FILES if not (path / name).is_file()]
    if missing:
        raise RolloutInputError(f"policy {path}: no tokenizer ({', '.join(missing)} missing); save the "
                                "tokenizer next to the weights (tokenizer.save_pretrained)")
    cfg = json.loads(config_file.read_text())
    _check_known_architecture(path, cfg)
    cfg = cfg.get("text_config", cfg)
    heads = int(cfg.get("num_attention_heads") or 0)
    head_dim = int(cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads else 0))
    return PolicyInfo(
        path=path,
        architecture=(cfg.get("architectures") or ["?"])[0],
        head_dim=head_dim,
        vocab_size=int(cfg.get("vocab_size", 0)),
        context_length=int(cfg.get("max_position_embeddings", 0)),
    )


def _check_known_architecture(path: Path, cfg: dict) -> None:
    """The trainer and the HF engine build the model with transformers' own classes (no remote
    code): an architecture it does not know would fail only when a stage loads the weights."""
    architectures = cfg.get("architectures") or []
    known = getattr(transformers, architectures[0], None) is not None if architectures else \
        cfg.get("model_type") in CONFIG_MAPPING
    if not known:
        what = f"architecture {architectures[0]!r}" if architectures else f"model_type {cfg.get('model_type')!r}"
        raise RolloutInputError(f"policy {path}: {what} is unknown to transformers {transformers.__version__} "
                                "(config.json); the trainer cannot build it. Convert the checkpoint to a "
                                "supported architecture (e.g. LlamaForCausalLM, Qwen2ForCausalLM)")


def load_policy_tokenizer(info: PolicyInfo) -> PreTrainedTokenizerFast:
    try:
        tokenizer = load_tokenizer(info.path)
    except (OSError, ValueError) as exc:
        raise RolloutInputError(f"policy {info.path}: tokenizer does not load: {exc}") from exc
    if not tokenizer.chat_template:  # every prompt is rendered with the policy's own template
        raise RolloutInputError(f"policy {info.path}: the tokenizer has no chat template (chat_template.jinja "
                                "or tokenizer_config.json's chat_template); prompts are rendered with the "
                                "model's own template. Use an instruct/chat checkpoint or save one with "
                                "tokenizer.chat_template = ...; tokenizer.save_pretrained(dir)")
    return tokenizer


def check_same_architecture(current: PolicyInfo, new: PolicyInfo) -> None:
    """In-place reload needs identical shapes; anything else needs a fresh engine."""
    for name in ("architecture", "head_dim", "vocab_size", "context_length"):
        if getattr(current, name) != getattr(new, name):
            raise RolloutInputError(f"reload_weights {new.path}: {name}={getattr(new, name)!r} differs from the "
                                    f"loaded policy's {getattr(current, name)!r}; open a new engine instead")
