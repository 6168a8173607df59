"""`oreal plan`: per-GPU memory checked against hand calculations and DeepSpeed's estimators.

Nothing is trained, loaded or downloaded: the tiny policy's shapes come from TinyModelSpec
(sft.cache_dir points at an empty folder) and the 7B's from configs/models/.
"""

import contextlib
import io
import json
import re

import pytest
from deepspeed.runtime.zero.stage3 import (
    estimate_zero3_model_states_mem_needs,
    estimate_zero3_model_states_mem_needs_all_cold,
)
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

from flows.cli import main
from oreal_core.config import load_config
from oreal_core.config.loading import CONFIG_DIR
from oreal_core.plan import GIB, activation_bytes, plan, resolve_arch

GPU80 = 80 * GIB
# configs/oreal-7b.yaml before it was made to fit 32 x 80 GiB (issue 16): the hand calculations
# and the advice below are about this shape.
UNFITTED_7B = ["rollout.colocation=shared", "rollout.engines=1", "rollout.gpu_memory_utilization=0.85",
               "train.micro_batch_tokens=32768"]
UNFITTED_7B_ARGS = [x for kv in UNFITTED_7B for x in ("--set", kv)]


def qwen2_params(h: int, layers: int, inter: int, vocab: int, kv_dim: int, tied: bool) -> int:
    """Qwen2ForCausalLM by hand: q/k/v have biases, o_proj does not; two RMSNorms per layer."""
    attention = (h * h + h) + 2 * (h * kv_dim + kv_dim) + h * h
    layer = attention + 3 * h * inter + 2 * h
    return vocab * h + layers * layer + h + (0 if tied else vocab * h)


# Tiny policy (TinyModelSpec defaults, sft.vocab_size 320): h 128, 2 layers, I 384, 1 KV head of 64.
TINY_N = qwen2_params(128, 2, 384, 320, 64, tied=False)
TINY_RM = TINY_N - 320 * 128 + 128  # LM head dropped, hidden -> 1 head added
# OREAL-7B-SFT = Qwen2.5-7B: h 3584, 28 layers, I 18944, vocab 152064, 4 KV heads of 128.
N7 = qwen2_params(3584, 28, 18944, 152064, 512, tied=False)
RM7 = N7 - 152064 * 3584 + 3584
EMBED7 = 152064 * 3584  # the largest layer (embedding and LM head)


@pytest.fixture
def tiny(tmp_path):
    return load_config("tiny-cpu", [f"sft.cache_dir={tmp_path}"])


@pytest.fixture(scope="module")
def seven_b():
    cfg = load_config("oreal-7b", UNFITTED_7B)
    return cfg, resolve_arch(cfg)


def _cli(capsys, *argv):
    code = main(["plan", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ parameter counts


def test_parameter_counts_match_the_hand_formula(tiny, seven_b):
    policy, reference = resolve_arch(tiny)
    assert reference is policy and policy.params == TINY_N == 476_288
    assert policy.rm_params == TINY_RM and policy.largest_layer == 128 * 384  # an MLP projection
    assert "TinyModelSpec" in policy.source
    arch = seven_b[1][0]
    assert arch.params == N7 == 7_615_616_512  # Qwen2.5-7B's published count
    assert arch.rm_params == RM7 and arch.largest_layer == arch.rm_largest_layer == EMBED7
    assert "configs/models/oreal-7b-sft.config.json" in arch.source and "/models/OREAL-7B-SFT" in arch.source


# ------------------------------------------------------------------ tiny model


def test_tiny_fp32_zero2_on_one_gpu_by_hand(tiny):
    p = plan(tiny, 1, 80)
    n, rm = TINY_N, TINY_RM
    # fp32 training has no master copy: 4 weights + 4 gradients + 8 AdamW, nothing sharded on 1 rank.
    assert (p.actor.weights, p.actor.grads, p.actor.optimizer, p.actor.gather) == (4 * n, 4 * n, 8 * n, 0)
    assert p.rm.total == 16 * rm and p.actor.deepspeed is None  # DeepSpeed estimates 16-bit training only
    assert p.reference_weights == 4 * n  # model.dtype float32, a whole copy
    # 8192 tokens (micro_batch_tokens > max_length 256), no checkpointing, fp32 (b = 4): per token
    # 2 layers x (8h + b (6h + 2 kv_dim + 4I)) + the final norm and gathered hidden (4h + 3b h).
    assert p.tokens == 8192
    assert p.activations == 8192 * (2 * (8 * 128 + 4 * (6 * 128 + 2 * 64 + 4 * 384)) + 4 * 128 + 12 * 128)
    assert p.logits == 8192 * 16 * 320
    assert p.kv_token_bytes == 2 * 2 * 1 * 64 * 4
    assert p.vllm_weights == 4 * n and p.kv_cache == 0.5 * GPU80 - 4 * n  # gpu_memory_utilization 0.5
    states = 16 * n + 16 * rm + 4 * n
    assert p.totals == pytest.approx((states + 0.5 * GPU80 + 2 * GIB,
                                      states + p.activations + p.logits + 0.5 * GPU80 + 2 * GIB))
    assert p.fits and p.columns == ("rollout phase", "train phase")


@pytest.mark.parametrize("gpus", [1, 2, 8])
@pytest.mark.parametrize("stage, offload", [(2, "none"), (2, "optimizer"), (3, "none"), (3, "optimizer"),
                                            (3, "optimizer+params")])  # offload_param is ZeRO-3 only
def test_tiny_bf16_model_states_equal_deepspeed_and_the_hand_formula(tiny, stage, gpus, offload):
    cfg = load_config("tiny-cpu", [f"sft.cache_dir={tiny.sft.cache_dir}", "train.dtype=bfloat16",
                                   f"train.zero_stage={stage}"])
    p = plan(cfg, gpus, 80, offload=offload)
    n, largest = TINY_N, 128 * 384
    if stage == 2:
        _, ds = estimate_zero2_model_states_mem_needs(n, gpus, 1, cpu_offload=offload != "none")
        hand = 2 * n + (0 if offload != "none" else 18 * n / gpus)
    else:
        _, ds, _ = estimate_zero3_model_states_mem_needs(n, largest, gpus, 1, cpu_offload=offload != "none",
                                                         cpu_offload_params=offload == "optimizer+params")
        hand = 4 * largest + {"none": 18 * n / gpus, "optimizer": 2 * n / gpus, "optimizer+params": 0}[offload]
    assert p.actor.deepspeed == ds
    assert p.actor.total == pytest.approx(hand, abs=1) and ds == pytest.approx(hand, abs=1)


def test_zero_stages_0_and_1_follow_the_same_byte_counts(tiny):
    cfg = load_config("tiny-cpu", [f"sft.cache_dir={tiny.sft.cache_dir}", "train.dtype=bfloat16",
                                   "train.zero_stage=0"])
    assert plan(cfg, 4, 80).actor.total == 20 * TINY_N  # = DeepSpeed's ZeRO-2 count on one rank
    cfg = load_config("tiny-cpu", [f"sft.cache_dir={tiny.sft.cache_dir}", "train.dtype=bfloat16",
                                   "train.zero_stage=1"])
    s = plan(cfg, 4, 80).actor  # optimizer states and fp32 gradients partitioned, the rest whole
    assert (s.weights, s.grads, s.optimizer) == (2 * TINY_N, 2 * TINY_N + 4 * TINY_N / 4, 12 * TINY_N / 4)


def test_tiny_cli_fits_on_one_gpu(tiny, capsys):
    code, out, _ = _cli(capsys, "--config", "tiny-cpu", "--set", f"sft.cache_dir={tiny.sft.cache_dir}")
    assert code == 0 and "FITS" in out and "per GPU, MiB" in out and "476,288 parameters" in out


# ------------------------------------------------------------------ 7B


def test_7b_zero3_on_32_gpus_by_hand_and_by_deepspeed(seven_b):
    cfg, arch = seven_b
    p = plan(cfg, 32, 80, arch=arch, advise=False)
    a = p.actor
    # DeepSpeed's ZeRO-3 count: 18 bytes/param partitioned (2 bf16 weights + 4 fp32 gradients +
    # 12 AdamW: fp32 master, momentum, variance), plus a 4-byte buffer for the largest layer.
    assert (a.weights, a.grads, a.optimizer, a.gather) == (2 * N7 / 32, 4 * N7 / 32, 12 * N7 / 32, 4 * EMBED7)
    assert a.total == pytest.approx(18 * N7 / 32 + 4 * EMBED7, abs=1)
    assert a.deepspeed == estimate_zero3_model_states_mem_needs(N7, EMBED7, 32, 1, cpu_offload=False)[1]
    assert a.deepspeed == pytest.approx(a.total, abs=1)
    assert round(a.total / GIB, 2) == 6.02
    assert p.rm.total == pytest.approx(18 * RM7 / 32 + 4 * EMBED7, abs=1)
    assert p.reference_weights == 2 * N7  # bf16, not partitioned

    # DeepSpeed's printing helper (the "cold" estimator) shows the same per-GPU figure.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        estimate_zero3_model_states_mem_needs_all_cold(N7, EMBED7, num_gpus_per_node=8, num_nodes=4)
    line = next(x for x in printed.getvalue().splitlines()
                if "offload_param=none" in x and "offload_optimizer=none" in x and "zero_init=1" in x)
    assert float(re.findall(r"([\d.]+)GB", line)[1]) == round(a.total / GIB, 2)


def test_7b_activations_and_kv_cache_by_hand(seven_b):
    cfg, arch = seven_b
    p = plan(cfg, 32, 80, arch=arch, advise=False)
    assert p.tokens == 32768  # micro_batch_tokens; above rollout.max_length
    per_layer = 8 * 3584 + 2 * (6 * 3584 + 2 * 512 + 4 * 18944)  # bf16
    final = 4 * 3584 + 3 * 2 * 3584
    assert p.activations == 32768 * (28 * 3584 * 2 + per_layer + final)  # checkpointed inputs + one layer
    assert p.logits == 32768 * 152064 * 16
    assert p.kv_token_bytes * 4 == 2 * 28 * 4 * 128 * 2  # 56 KiB per token, split over TP 4
    assert p.vllm_weights == 2 * N7 / 4 and p.kv_cache == 0.85 * GPU80 - 2 * N7 / 4
    body, logits = activation_bytes(arch[0], 16384, 2, checkpointing=False)
    assert body == 16384 * (28 * per_layer + final) and logits == 16384 * 152064 * 16


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_formula_matches_what_autograd_saves(dtype, checkpointing):
    """The body term against the tensors autograd keeps in a small Qwen2's actor forward (CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from oreal_core.plan.arch import _arch_from_json
    from oreal_core.train.models import ResponseLogProbs

    shape = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=300, tie_word_embeddings=False)
    arch = _arch_from_json(json.dumps({"model_type": "qwen2", **shape}), "test")
    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**shape), attn_implementation="sdpa", dtype=torch_dtype)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    actor = ResponseLogProbs(model.train())
    rows, length = 2, 128
    ids = torch.randint(0, 300, (rows, length), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(length - 1).expand(rows, -1)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(t):
        if t.untyped_storage().data_ptr() not in weights:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        actor(ids, torch.ones_like(ids), positions, ids[:, 1:])
    b, tokens = torch_dtype.itemsize, rows * length
    body, _ = activation_bytes(arch, tokens, b, checkpointing)
    if checkpointing:  # the recomputed layer exists only during the backward pass
        body -= tokens * (8 * 128 + b * (6 * 128 + 2 * 64 + 4 * 384))
    log_softmax = 4 * 300 * rows * (length - 1)  # the fp32 log-softmax kept for backward
    assert sum(saved.values()) == pytest.approx(body + log_softmax, rel=0.02)


def test_7b_unfitted_on_32_gpus_does_not_fit_and_the_advice_does(seven_b, capsys):
    code, out, _ = _cli(capsys, "--config", "oreal-7b", "--gpus", "32", *UNFITTED_7B_ARGS)
    assert code == 3 and "DOES NOT FIT" in out
    assert "estimate_zero3_model_states_mem_needs(7,615,616,512 params): actor 6.02 GiB per GPU = its rows" in out
    advice = next(line for line in out.splitlines() if line.strip().startswith("without offload:"))
    assert "(fits" in advice
    sets = re.findall(r"--set (\S+?)(?:,|\s)", advice)
    assert "rollout.colocation=sleep" in sets and "train.micro_batch_tokens=16384" in sets
    args = [x for kv in sets for x in ("--set", kv)]
    code, out, _ = _cli(capsys, "--config", "oreal-7b", "--gpus", "32", *UNFITTED_7B_ARGS, *args)
    assert code == 0 and "FITS" in out


def test_7b_on_one_80gib_gpu_does_not_fit_and_advises_more_gpus_or_offload(capsys):
    code, out, _ = _cli(capsys, "--config", "oreal-7b", "--gpus", "1", "--gpu-mem", "80",
                        *UNFITTED_7B_ARGS, "--set", "rollout.tensor_parallel_size=1")
    assert code == 3 and "ZeRO-3 over 1 rank" in out
    more = next(line for line in out.splitlines() if "without offload:" in line)
    offload = next(line for line in out.splitlines() if "with CPU offload:" in line)
    assert re.search(r"--gpus \d+", more) and "(fits" in more
    assert "offload_optimizer=cpu" in offload and "(fits" in offload


def test_zero2_7b_advises_zero3(seven_b):
    cfg = load_config("oreal-7b", ["train.zero_stage=2", "rollout.colocation=disjoint",
                                   "train.micro_batch_tokens=16384", "rollout.engines=2"])
    p = plan(cfg, 32, 80, arch=seven_b[1])
    assert not p.fits and p.train_ranks == 24
    assert any(a.startswith("--set train.zero_stage=3") for a in p.advice)


def test_gpus_default_to_nproc_per_node_times_nnodes(capsys):
    # configs/oreal-7b.yaml as checked in: 4 nodes x 8 GPUs, and it fits.
    code, out, _ = _cli(capsys, "--config", "oreal-7b")
    assert code == 0 and "on 32 x 80 GiB GPUs" in out and "ZeRO-3 over 32 rank(s)" in out
    code, out, _ = _cli(capsys, "--config", "oreal-7b", "--set", "train.nnodes=1")
    assert code == 3 and "on 8 x 80 GiB GPUs" in out and "ZeRO-3 over 8 rank(s)" in out


def test_model_config_option(tmp_path, capsys):
    (tmp_path / "config.json").write_text((CONFIG_DIR / "models" / "oreal-7b-sft.config.json").read_text())
    code, out, _ = _cli(capsys, "--config", "oreal-7b", "--gpus", "32", "--model-config", str(tmp_path))
    assert code == 0 and f"--model-config {tmp_path / 'config.json'}" in out


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "0"], "--gpus: 0: must be >= 1"),
    (["--gpu-mem", "0"], "--gpu-mem: 0.0: must be > 0"),
    (["--gpu-mem", "nan"], "must be a finite number"),
])
def test_bad_numbers_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["plan", "--config", "oreal-7b", *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--set", "model.policy=/nowhere/Unknown-Model"], "no config.json there and no unknown-model.config.json"),
    (["--model-config", "/nowhere/config.json"], "--model-config '/nowhere/config.json': no such config.json"),
    (["--gpus", "4", "--set", "rollout.colocation=disjoint"], "plus at least one for the trainer"),
    (["--gpus", "2"], "needs 8 GPUs, but the plan has 2"),
    (["--gpus", "8", "--set", "rollout.engines=1", "--set", "rollout.tensor_parallel_size=8"],
     "divide the 28 attention heads"),
    (["--set", "train.zero_stage=7"], "train.zero_stage=7: must be one of"),
])
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    code, out, err = _cli(capsys, "--config", "oreal-7b", *argv)
    assert code == 2 and message in err and out == ""


def test_unusable_config_json_exits_2(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    code, _, err = _cli(capsys, "--config", "oreal-7b", "--gpus", "4", "--model-config", str(tmp_path))
    assert code == 2 and "not a usable HF config.json" in err
