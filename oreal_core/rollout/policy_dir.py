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
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit: a larger length is garbage, not a header


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
    try:
        cfg = _read_config(path)
    except _BadConfig as exc:
        raise RolloutInputError(f"policy {path}: {exc}") from None
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


def check_model_dir(model_dir: str | Path, key: str) -> None:
    """Raise a RolloutInputError naming ``key`` (e.g. ``model.reference``) if ``model_dir`` is
    not a loadable HF model directory. Run before a run or an eval exists: a broken folder
    otherwise fails as a traceback inside a stage, after work was committed."""
    problem = model_dir_problem(model_dir)
    if problem is not None:
        raise RolloutInputError(f"{key}={str(model_dir)!r}: {problem}")


def model_dir_problem(model_dir: str | Path) -> str | None:
    """What makes ``model_dir`` unloadable, in a few words, or None. Cheap: reads config.json
    and the weight files' headers, never the weights."""
    path = Path(model_dir)
    if not path.exists():
        return "no such directory"
    if not path.is_dir():
        return "not a directory"
    if not any(path.iterdir()):
        return "the directory is empty"
    if not (path / "config.json").is_file():
        return "no config.json (expected an HF-format model directory)"
    try:
        _read_config(path)
    except _BadConfig as exc:
        return str(exc)
    return _weights_problem(path)


class _BadConfig(ValueError):
    """config.json that is there but unusable; the message is the problem alone."""


def _read_config(path: Path) -> dict:
    try:
        cfg = json.loads((path / "config.json").read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, absurd nesting
        raise _BadConfig(f"config.json is not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise _BadConfig("config.json is not a JSON object")
    return cfg


def _weights_problem(path: Path) -> str | None:
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in path.glob(pattern) if f.is_file()})
    if not files:
        return "no weights file (model.safetensors, pytorch_model.bin or a sharded index)"
    for index in (f for f in files if f.name.endswith(".index.json")):
        if (problem := _index_problem(index)) is not None:
            return problem
    for shard in (f for f in files if f.suffix == ".safetensors"):
        if (problem := safetensors_problem(shard)) is not None:
            return problem
    return None


def _index_problem(index: Path) -> str | None:
    """A sharded checkpoint's index must name shards that are there."""
    try:
        shards = set(json.loads(index.read_bytes())["weight_map"].values())
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return f"{index.name} is not a weight index (JSON with a weight_map)"
    missing = sorted(s for s in shards if not (index.parent / str(s)).is_file())
    return f"{index.name} names missing shards: {', '.join(missing[:3])}" if missing else None


def safetensors_problem(file: Path) -> str | None:
    """Whether a safetensors file is whole, from its header alone: an 8-byte little-endian
    length, a JSON header of that length, then tensor bytes up to the largest data offset.
    A truncated copy fails here instead of in the loader minutes later."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= min(size - 8, MAX_HEADER_BYTES):
            return f"{file.name}: unreadable safetensors header ({size} bytes; truncated or not safetensors)"
        try:
            header = json.loads(handle.read(length))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, RecursionError, KeyError, TypeError, IndexError, AttributeError):
            return f"{file.name}: unreadable safetensors header (not JSON tensor entries)"
    if 8 + length + end > size:
        return f"{file.name}: truncated ({size} bytes; its header describes {8 + length + end})"
    return None


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


def end_of_turn_tokens(info: PolicyInfo, tokenizer: PreTrainedTokenizerFast) -> set[str]:
    """The tokens the model ends a reply with, from its own files: generation_config.json's
    ``eos_token_id`` (an id or a list) and the tokenizer's ``eos_token``."""
    ids: list[int] = []
    generation = info.path / "generation_config.json"
    if generation.is_file():
        eos = json.loads(generation.read_text()).get("eos_token_id")
        ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    tokens = {tokenizer.convert_ids_to_tokens(int(i)) for i in ids}
    if tokenizer.eos_token:
        tokens.add(tokenizer.eos_token)
    return tokens - {None}


def stop_word_warning(info: PolicyInfo, tokenizer: PreTrainedTokenizerFast, stop_word: str) -> str | None:
    """Why ``stop_word`` may not end this model's replies, or None. A warning, not an error: a
    base checkpoint fine-tuned on a chat format may end turns with a token its files do not
    list as eos; but when it does not, every response runs to max_new_tokens."""
    ends = end_of_turn_tokens(info, tokenizer)
    if not ends or stop_word in ends:
        return None
    return (f"policy {info.path}: rollout.stop_word={stop_word!r} is not among the tokens the model's files say it "
            f"ends a reply with ({', '.join(sorted(map(repr, ends)))}: generation_config.json eos_token_id, the "
            "tokenizer's eos_token); if the model does not emit it, every response runs to rollout.max_new_tokens. "
            "Set rollout.stop_word and verifier.stop_word to the model's end-of-turn token")


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
