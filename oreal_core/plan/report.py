"""The text `oreal plan` prints: the setup, the per-GPU table, DeepSpeed's figures, the verdict."""

from __future__ import annotations

from oreal_core.plan.budget import MemoryPlan
from oreal_core.plan.memory import GIB, element_bytes

OFFLOAD_WORDS = {"none": "no offload", "optimizer": "optimizer offloaded to CPU",
                 "optimizer+params": "optimizer and weights offloaded to CPU"}


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


def format_plan(p: MemoryPlan) -> str:
    cfg, train, roll = p.setup.cfg, p.setup.cfg.train, p.setup.cfg.rollout
    arch = p.policy
    # A tiny model's states are a few MiB: show the table in MiB rather than as zeros.
    unit, scale = ("MiB", 2**20) if arch.params * 20 < GIB else ("GiB", GIB)

    def g(nbytes: float) -> str:
        return f"{nbytes / scale:.2f}"

    lines = [
        f"oreal plan: {cfg.run.name} on {p.setup.gpus} x {p.gpu_mem / GIB:g} GiB GPUs",
        f"  policy     {arch.name}, {_count(arch.params)} parameters (hidden {arch.hidden}, {arch.layers} layers, "
        f"vocab {arch.vocab}, {arch.heads} heads / {arch.kv_heads} KV heads)",
        f"             architecture from {arch.source}",
    ]
    if p.reference is not p.policy:
        lines.append(f"  reference  {p.reference.name}, {_count(p.reference.params)} parameters, from "
                     f"{p.reference.source}")
    lines.append(f"  train      ZeRO-{train.zero_stage} over {p.train_ranks} rank(s), {p.train_dtype}, "
                 f"{OFFLOAD_WORDS[p.setup.offload]}; micro-batch {train.micro_batch_tokens} tokens (largest "
                 f"{p.tokens}), gradient checkpointing {'on' if cfg.model.gradient_checkpointing else 'off'}; "
                 f"token RM {'on' if p.rm else 'off'}")
    if p.engine_gpus:
        on = f"GPUs 0-{p.engine_gpus - 1}" if p.engine_gpus > 1 else "GPU 0"
        lines.append(f"  rollout    vLLM, {roll.engines} engine(s) x TP {roll.tensor_parallel_size} on {on}, "
                     f"colocation {roll.colocation}, gpu_memory_utilization "
                     f"{roll.gpu_memory_utilization:g}")
        if p.engine_gpus < p.setup.gpus and roll.colocation != "disjoint":
            lines.append(f"             the table is GPU 0; GPUs {p.engine_gpus}-{p.setup.gpus - 1} hold no vLLM rows")
    else:
        lines.append("  rollout    HF engine on the CPU (no GPU memory)")

    width = max(len(label) for label, _ in p.rows) + 2
    header = "".join(f"{c:>13}" for c in p.columns)
    lines += ["", f"{'per GPU, ' + unit:<{width}}{header}"]
    for label, values in p.rows:
        lines.append(f"{label:<{width}}" + "".join(f"{g(v) if v is not None else '-':>13}" for v in values))
    lines.append(f"{'total':<{width}}" + "".join(f"{g(t):>13}" for t in p.totals))
    lines.append(f"{'GPU memory':<{width}}" + "".join(f"{g(p.gpu_mem):>13}" for _ in p.columns))
    lines.append("")

    for name, s, params in (("actor", p.actor, arch.params), ("token RM", p.rm, arch.rm_params)):
        if s is None:
            continue
        if s.deepspeed is None:
            why = "fp32 training" if p.train_dtype == "float32" else f"ZeRO-{train.zero_stage}"
            lines.append(f"DeepSpeed estimator: none for {why}; {name} states {g(s.total)} {unit} from the formula "
                         "in oreal_core/plan/memory.py")
        else:
            cpu = f", host RAM {g(s.cpu_per_node)} {unit} per node" if s.cpu_per_node else ""
            same = "= its rows above" if abs(s.deepspeed - s.total) < 16 else f"(rows above: {g(s.total)})"
            lines.append(f"DeepSpeed estimate_zero{train.zero_stage}_model_states_mem_needs({params:,} params): "
                         f"{name} {g(s.deepspeed)} {unit} per GPU {same}{cpu}")
    if p.engine_gpus:
        seqs = p.kv_tokens / roll.max_length
        lines.append(f"vLLM KV cache: {p.kv_token_bytes * roll.tensor_parallel_size / 1024:.1f} KiB per token "
                     f"(2 x {arch.layers} layers x {arch.kv_heads} KV heads x {arch.head_dim} x "
                     f"{element_bytes(cfg.model.dtype)} B); {p.kv_tokens:,} tokens per engine = {seqs:.1f} sequences "
                     f"of rollout.max_length {roll.max_length} (vLLM's own activations and CUDA graphs come out of "
                     "this)")
    lines.append("Activations and logits are estimates (formula in oreal_core/plan/memory.py: activation_bytes); "
                 "model states follow DeepSpeed's estimators.")
    lines.append("")

    if p.fits:
        lines.append(f"FITS: peak {p.peak / GIB:.2f} GiB of {p.gpu_mem / GIB:g} GiB per GPU")
    else:
        lines.append("DOES NOT FIT: " + "; ".join(p.problems))
        if p.advice:
            lines.append("what to change (each line is one option; offload is not a config key yet: it is "
                         "DeepSpeed's zero_optimization in oreal_core/train/engines.py):")
            lines += [f"  {a}" for a in p.advice]
    return "\n".join(lines)
