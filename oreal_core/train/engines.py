"""DeepSpeed engines for the actor and the token RM.

Both are ZeRO engines (stage from ``train.zero_stage``) around a torch AdamW: DeepSpeed's
own CPU/fused Adam would JIT-compile for a minute on machines without prebuilt ops, and
the torch optimiser is what the reference uses. ``zero_allow_untested_optimizer`` lets
ZeRO partition it.

Gradient accumulation is *unmanaged*: a step has as many micro-batches as its token
budget needs, so the engine's fixed ``gradient_accumulation_steps`` cannot describe it.
Each ``backward`` accumulates locally; the single ``step()`` per RL iteration reduces,
clips (``optim.grad_clip``) and updates. Losses arrive already normalised by the step's
global token counts, so no 1/GAS scaling is applied (GAS stays 1).

The learning rate is not a DeepSpeed scheduler: it is a pure function of the RL step
(``oreal_core.algo.schedule``) written into the optimiser before each update. A resumed
run therefore gets exactly the LR the uninterrupted run would have had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from oreal_core.config import OptimConfig, TrainConfig


def deepspeed_config(train: TrainConfig, optim: OptimConfig, dtype: torch.dtype) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": train.zero_stage}
    if train.zero_stage == 3:
        # HF-format checkpoints need the full weights gathered on rank 0.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": 1,  # nominal: micro-batches are sized by tokens, not rows
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "steps_per_print": 2**31 - 1,  # metrics are ours; keep DeepSpeed's progress lines out of logs
        "wall_clock_breakdown": False,
    }


def adamw(module: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, eps=optim.eps,
                             weight_decay=optim.weight_decay)


@dataclass
class Engine:
    """A DeepSpeed engine and the torch optimiser whose LR we set each step."""

    engine: Any  # deepspeed.DeepSpeedEngine
    optimizer: torch.optim.Optimizer

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def discard_gradients(self) -> None:
        """Drop what this step accumulated, so a refused step leaves no trace in the next.

        Mirrors what DeepSpeed's ZeRO optimisers do when they skip an overflowing step
        (stage 1/2: ``step`` on overflow; stage 3: ``_overflow_clean_up``): gradients
        accumulated over micro-batches live in the optimiser's partition buffers, not
        only in ``param.grad``.
        """
        zero = self.engine.optimizer
        zero.zero_grad(set_to_none=True)
        release = getattr(zero, "_release_preflattened_grad_buffers", None)
        if callable(release):
            release()
        for name in ("averaged_gradients", "all_grad_tensors"):
            buffers = getattr(zero, name, None)
            if isinstance(buffers, dict):
                for key in list(buffers):
                    buffers[key] = None
        from deepspeed.runtime.zero import stage_1_and_2

        if isinstance(zero, stage_1_and_2.DeepSpeedZeroOptimizer):  # stage 3's zero_grad resets its own
            zero.micro_step_id = stage_1_and_2.INITIAL_MICRO_STEP_ID
        self.engine.zero_grad()


def build_engine(module: nn.Module, train: TrainConfig, optim: OptimConfig, dtype: torch.dtype) -> Engine:
    import deepspeed

    optimizer = adamw(module, optim)
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer,
                                           config=deepspeed_config(train, optim, dtype))
    return Engine(engine=engine, optimizer=optimizer)
