"""Bytes of each thing a GPU holds: a trained model's states, activations and logits, KV cache.

Model states follow DeepSpeed's estimators; activations and logits are estimates, checked in
tests/train/test_plan.py against what autograd saves.
"""

from __future__ import annotations

from dataclasses import dataclass

from oreal_core.plan.arch import Arch

GIB = 2**30


def element_bytes(dtype: str) -> int:
    """Bytes per element of a config dtype; "auto" is bf16 on a GPU, which is what a plan is for."""
    return 4 if dtype == "float32" else 2


@dataclass(frozen=True)
class ModelStates:
    """Per-GPU bytes of one trained model (actor or token RM) under ZeRO."""

    weights: float
    grads: float
    optimizer: float
    gather: float  # ZeRO-3: 4 bytes x the largest layer, DeepSpeed's buffer for gathered params
    deepspeed: float | None  # DeepSpeed's estimator for the same setup (None: it has none)
    cpu_per_node: float  # host RAM per node DeepSpeed estimates for the offloaded part

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.gather


def model_states(params: int, largest_layer: int, stage: int, ranks: int, offload: str, mixed: bool,
                 nodes: int = 1) -> ModelStates:
    """Weights, gradients and AdamW states per GPU, counted as DeepSpeed's estimators do.

    16-bit mixed precision (bytes per parameter, DeepSpeed's comment in stage_1_and_2.py):
    2 for the 16-bit weights; gradients 2 (16-bit) + 4 (fp32); AdamW 12 (fp32 master weights,
    momentum, variance). ZeRO-1 partitions the optimizer states and the fp32 gradients,
    ZeRO-2 all gradients too, ZeRO-3 also the weights; DeepSpeed's ZeRO-3 estimator counts 18
    partitioned bytes (no separate 16-bit gradient) plus a 4-byte gather buffer for the largest
    layer. fp32 training (no master copy): 4 weights + 4 gradients + 8 AdamW. Offloading the
    optimizer moves its states and the gradients it reads to the CPU.
    """
    n, g = float(params), float(ranks)
    if mixed:
        w, g16, g32, opt = 2.0, 2.0, 4.0, 12.0
        if stage == 3:
            g16 = 0.0
    else:
        w, g16, g32, opt = 4.0, 4.0, 0.0, 8.0
    weights = w * n / g if stage == 3 else w * n
    grads = (g16 + g32) * n / g if stage >= 2 else g16 * n + g32 * n / (g if stage == 1 else 1.0)
    optimizer = opt * n / (g if stage >= 1 else 1.0)
    gather = 4.0 * largest_layer if stage == 3 else 0.0
    if offload != "none":
        grads = optimizer = 0.0
    if offload == "optimizer+params":
        weights = 0.0
    ds, cpu = _deepspeed_estimate(params, largest_layer, stage, ranks, offload, nodes) if mixed else (None, 0.0)
    return ModelStates(weights, grads, optimizer, gather, ds, cpu)


def _deepspeed_estimate(params: int, largest_layer: int, stage: int, ranks: int, offload: str,
                        nodes: int) -> tuple[float | None, float]:
    """(GPU bytes, CPU bytes per node) from DeepSpeed's estimators; (None, 0) where it has none."""
    nodes = nodes if ranks % nodes == 0 else 1
    per_node, cpu_off = ranks // nodes, offload != "none"
    if stage == 2 and offload != "optimizer+params":
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        cpu, gpu = estimate_zero2_model_states_mem_needs(params, per_node, nodes, cpu_offload=cpu_off)
    elif stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(params, largest_layer, per_node, nodes,
                                                            cpu_offload=cpu_off,
                                                            cpu_offload_params=offload == "optimizer+params")
    else:
        return None, 0.0
    return float(gpu), float(cpu) if cpu_off else 0.0


def activation_bytes(arch: Arch, tokens: int, dtype_bytes: int, checkpointing: bool, eager_seq: int = 0,
                     ) -> tuple[float, float]:
    """(transformer body, logits) bytes of one actor micro-batch of ``tokens`` tokens: an estimate.

    Body: what autograd keeps per token and layer of a Qwen2/Llama layer with flash/SDPA
    attention (no L x L scores) and no dropout, as tests/train/test_plan.py counts it with
    ``torch.autograd.graph.saved_tensors_hooks``. Each of the two RMSNorms keeps an fp32 copy of
    its input (4h bytes) and its normalised and weighted outputs (2 x b.h); attention keeps
    q and its output (b.h each) and k, v (b.kv_dim each); SwiGLU keeps gate, up, act(gate) and
    their product (4 b.I):  8h + b (6h + 2 kv_dim + 4I)  bytes, b = bytes of the train dtype.
    With gradient checkpointing a layer keeps only its input (b.h) and one layer at a time is
    recomputed in the backward pass. The final RMSNorm and the hidden states gathered at the
    response positions add 4h + 3 b.h. ``eager_seq`` > 0 adds eager attention's scores and
    probabilities (2 b x heads x seq per token and layer).

    Logits: ResponseLogProbs makes (B, T, V) logits in fp32 and their log-softmax, and under
    no_grad exp() and the product for the entropy: ~16 bytes x V per response token at the
    peak (its backward needs about as much). All tokens are counted as response tokens, an
    upper bound that math rollouts (short prompts, long answers) come close to.
    """
    h, b = arch.hidden, dtype_bytes
    per_layer = 8 * h + b * (6 * h + 2 * arch.kv_heads * arch.head_dim + 4 * arch.intermediate
                             + 2 * arch.heads * eager_seq)
    layers = arch.layers * b * h + per_layer if checkpointing else arch.layers * per_layer
    final = 4 * h + 3 * b * h  # the final RMSNorm and the hidden states gathered for the head
    return float(tokens * (layers + final)), 16.0 * arch.vocab * tokens


def kv_bytes_per_token(arch: Arch, dtype_bytes: int, tp: int = 1) -> int:
    """vLLM KV cache per token on one GPU: K and V x layers x KV heads (split by TP) x head_dim."""
    return 2 * arch.layers * max(1, arch.kv_heads // tp) * arch.head_dim * dtype_bytes
