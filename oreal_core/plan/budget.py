"""One setup's per-GPU table: where the trainer and vLLM go, and what each column holds.

How the trainer and vLLM share a GPU depends on ``rollout.colocation``: the table has one
column per phase (shared, sleep) or per kind of GPU (disjoint).
"""

from __future__ import annotations

from dataclasses import dataclass

from oreal_core.config import OrealConfig
from oreal_core.plan.arch import Arch
from oreal_core.plan.errors import PlanInputError
from oreal_core.plan.memory import (
    GIB,
    ModelStates,
    activation_bytes,
    element_bytes,
    kv_bytes_per_token,
    model_states,
)

ALLOWANCE_GIB = 2.0  # CUDA context (~0.5-1 GiB), NCCL buffers, allocator fragmentation
OFFLOADS = ("none", "optimizer", "optimizer+params")  # DeepSpeed offload_optimizer / offload_param

Row = tuple[str, tuple[float | None, ...]]


@dataclass(frozen=True)
class Setup:
    """What a plan varies: the config, the GPU count and DeepSpeed's CPU offload (one of OFFLOADS)."""

    cfg: OrealConfig
    gpus: int
    offload: str = "none"


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU bytes of one setup, whether it fits, and what to change if it does not."""

    setup: Setup
    gpu_mem: float
    policy: Arch
    reference: Arch
    train_ranks: int
    engine_gpus: int  # engines x TP (0: the HF engine samples on the CPU)
    train_dtype: str
    actor: ModelStates
    rm: ModelStates | None
    reference_weights: float
    tokens: int  # tokens of the largest micro-batch
    activations: float  # transformer body
    logits: float
    vllm_weights: float  # per engine GPU
    kv_cache: float  # per engine GPU: what vLLM's share leaves after the weights
    kv_token_bytes: int  # per GPU
    kv_tokens: int  # per engine
    allowance: float
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    totals: tuple[float, ...]
    problems: tuple[str, ...]
    advice: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def peak(self) -> float:
        return max(self.totals)


def _placement(cfg: OrealConfig, gpus: int, arch: Arch) -> tuple[int, int]:
    """(trainer ranks, engine GPUs), with the rules of oreal_core/rollout/devices.py."""
    r = cfg.rollout
    if r.engine != "vllm":
        return gpus, 0
    need = r.engines * r.tensor_parallel_size
    if r.colocation == "disjoint" and need >= gpus:
        raise PlanInputError(f"rollout.engines={r.engines} x tensor_parallel_size={r.tensor_parallel_size} = {need} "
                             f"GPUs plus at least one for the trainer (colocation=disjoint), but the plan has {gpus}; "
                             "give more --gpus, fewer engines or a smaller TP, or colocation shared/sleep")
    if need > gpus:
        raise PlanInputError(f"rollout.engines={r.engines} x tensor_parallel_size={r.tensor_parallel_size} needs "
                             f"{need} GPUs, but the plan has {gpus}; give --gpus >= {need} or lower them")
    if arch.heads % r.tensor_parallel_size or (arch.kv_heads % r.tensor_parallel_size
                                               and r.tensor_parallel_size % arch.kv_heads):
        raise PlanInputError(f"rollout.tensor_parallel_size={r.tensor_parallel_size}: vLLM needs it to divide the "
                             f"{arch.heads} attention heads and to divide or be a multiple of the {arch.kv_heads} KV heads")
    return (gpus - need if r.colocation == "disjoint" else gpus), need


def _columns(colocation: str, engine_gpus: int) -> dict[str, tuple[bool, bool, bool]]:
    """Each column and whether it holds (trainer states, activations, vLLM): a GPU in the rollout
    and the train phase, or two kinds of GPU."""
    if not engine_gpus:
        return {"train": (True, True, False)}
    if colocation == "shared":  # vLLM keeps its share throughout
        return {"rollout phase": (True, False, True), "train phase": (True, True, True)}
    if colocation == "sleep":  # vLLM frees its share around the train step
        return {"rollout phase": (True, False, True), "train phase": (True, True, False)}
    # disjoint: vLLM's share already includes its own CUDA context
    return {"engine GPU": (False, False, True), "trainer GPU": (True, True, False)}


def _precision(nbytes: int) -> str:
    return "fp32" if nbytes == 4 else "bf16"


def budget(setup: Setup, mem: float, policy: Arch, reference: Arch) -> MemoryPlan:
    """The per-GPU table of ``setup`` on GPUs of ``mem`` bytes, and what does not fit (no advice)."""
    cfg, train, roll = setup.cfg, setup.cfg.train, setup.cfg.rollout
    ranks, engine_gpus = _placement(cfg, setup.gpus, policy)
    if setup.offload == "optimizer+params" and train.zero_stage != 3:
        raise PlanInputError("offload_param needs ZeRO-3 (train.zero_stage=3)")
    if setup.offload != "none" and train.zero_stage == 0:
        raise PlanInputError("offload_optimizer needs ZeRO stage 1-3")
    tb, mb = element_bytes(train.dtype), element_bytes(cfg.model.dtype)
    states = dict(stage=train.zero_stage, ranks=ranks, offload=setup.offload, mixed=tb == 2, nodes=train.nnodes)
    actor = model_states(policy.params, policy.largest_layer, **states)
    rm = model_states(policy.rm_params, policy.rm_largest_layer, **states) if cfg.token_rm.enabled else None
    ref = float(reference.params * mb)
    # A sample longer than the budget gets a micro-batch of its own (batching.plan_micro_batches).
    tokens = max(train.micro_batch_tokens, roll.max_length)
    eager = min(tokens, roll.max_length) if cfg.model.attn_implementation == "eager" else 0
    body, logits = activation_bytes(policy, tokens, tb, cfg.model.gradient_checkpointing, eager)

    tp = roll.tensor_parallel_size
    vllm_share = roll.gpu_memory_utilization * mem if engine_gpus else 0.0
    vllm_w = policy.params * mb / tp if engine_gpus else 0.0
    kv = max(0.0, vllm_share - vllm_w)
    kv_tok = kv_bytes_per_token(policy, mb, tp)
    kv_tokens = int(kv // kv_tok) if engine_gpus else 0
    allow = ALLOWANCE_GIB * GIB

    wpart = f"1/{ranks}" if train.zero_stage == 3 and ranks > 1 else "whole"
    trainer_rows: list[tuple[str, float]] = []
    for name, s in (("actor", actor), ("token RM", rm)):
        if s is not None:
            trainer_rows += [(f"{name} weights ({_precision(tb)}, {wpart})", s.weights),
                             (f"{name} gradients", s.grads),
                             (f"{name} AdamW states", s.optimizer),
                             (f"{name} ZeRO-3 gathered layer", s.gather)]
    trainer_rows.append((f"reference weights ({_precision(mb)}, whole copy)", ref))
    ckpt = "checkpointed" if cfg.model.gradient_checkpointing else "no checkpointing"
    act_rows = [(f"activations, {tokens} tokens ({ckpt}), est.", body),
                (f"logits, {tokens} tokens x {policy.vocab} fp32, est.", logits)]
    vllm_rows = [(f"vLLM weights (TP {tp})", vllm_w), ("vLLM KV cache", kv)] if engine_gpus else []

    columns = _columns(roll.colocation, engine_gpus)
    holds = list(columns.values())
    rows: list[Row] = [(label, tuple(value if h[group] else None for h in holds))
                       for group, group_rows in enumerate((trainer_rows, act_rows, vllm_rows))
                       for label, value in group_rows if value]
    rows.append(("CUDA context, NCCL, fragmentation (allowance)", tuple(allow if h[0] else None for h in holds)))
    totals = tuple(sum(v[i] or 0.0 for _, v in rows) for i in range(len(columns)))

    problems = [f"{c} needs {total / GIB:.2f} GiB of {mem / GIB:.2f} GiB"
                for c, total in zip(columns, totals, strict=True) if total > mem]
    if engine_gpus and kv_tokens < roll.max_length:
        problems.append(f"vLLM's share ({roll.gpu_memory_utilization:g} x {mem / GIB:.0f} GiB) leaves KV cache for "
                        f"{kv_tokens} tokens, fewer than rollout.max_length={roll.max_length} (vLLM will not start)")
    return MemoryPlan(setup=setup, gpu_mem=mem, policy=policy, reference=reference, train_ranks=ranks,
                      engine_gpus=engine_gpus, train_dtype="bfloat16" if train.dtype == "auto" else train.dtype,
                      actor=actor, rm=rm, reference_weights=ref, tokens=tokens, activations=body, logits=logits,
                      vllm_weights=vllm_w, kv_cache=kv, kv_token_bytes=kv_tok, kv_tokens=kv_tokens, allowance=allow,
                      columns=tuple(columns), rows=tuple(rows), totals=totals, problems=tuple(problems))
