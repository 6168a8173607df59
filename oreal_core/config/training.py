"""Configuration of the update: advantages and selection, the loss, the optimisers of the actor
and the token RM, and the training engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from oreal_core.config.checks import _check


@dataclass(frozen=True)
class AlgoConfig:
    """Advantages and which samples of each group are trained on (Algorithm 1, lines 3-5)."""

    advantage: Literal["rloo", "grpo", "reinforce"] = "rloo"
    selection: Literal["pair", "all"] = "pair"  # pair: 1 correct + 1 incorrect per 0<p<1 prompt


@dataclass(frozen=True)
class LossConfig:
    """The OREAL objective (OREAL_SPEC.md §1.2) and its ablation variants."""

    variant: Literal["oreal", "oreal_no_bc", "policy_gradient"] = "oreal"
    positive_loss_factor: float = 1.0
    negative_loss_factor: float = 0.5
    pos_mult_adv: bool = True
    kl_coef: float = 0.01
    kl_type: Literal["unbias", "kl", "mse"] = "unbias"  # unbias = k3, kl = k1, mse = k2

    def __post_init__(self) -> None:
        _check(self.positive_loss_factor >= 0, "positive_loss_factor", self.positive_loss_factor, "must be >= 0")
        _check(self.negative_loss_factor >= 0, "negative_loss_factor", self.negative_loss_factor, "must be >= 0")
        _check(self.kl_coef >= 0, "kl_coef", self.kl_coef, "must be >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to min_lr, gradient-norm clipping."""

    lr: float = 5e-7
    min_lr: float = 1e-7
    warmup_steps: int = 10
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(0 <= self.min_lr <= self.lr, "min_lr", self.min_lr, f"must be in [0, lr={self.lr}]")
        _check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(all(0 <= b < 1 for b in self.betas), "betas", self.betas, "each must be in [0, 1)")
        _check(self.eps > 0, "eps", self.eps, "must be > 0")
        _check(self.grad_clip > 0, "grad_clip", self.grad_clip, "must be > 0")


@dataclass(frozen=True)
class ActorConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    freeze_steps: int = 10  # the token RM warms up alone first (its zero head gives w = 0)
    # The reference's actor scheduler keeps stepping while the actor is frozen, so actor
    # updates start at peak LR. True keeps that behaviour (see oreal_core/algo/schedule.py).
    scheduler_advances_while_frozen: bool = True

    def __post_init__(self) -> None:
        _check(self.freeze_steps >= 0, "freeze_steps", self.freeze_steps, "must be >= 0")


@dataclass(frozen=True)
class TokenRMConfig:
    """The on-policy token-level reward model (OREAL_SPEC.md §2)."""

    enabled: bool = True
    # "head": the reference's RM, the policy's body with a zero-initialised scalar head.
    # "implicit": a copy of the whole policy LM scoring s_t = implicit_beta * log(pi_rm/pi_ref)
    # of each sampled token (PRIME-style); "likelihood": the same LM scoring
    # implicit_beta * (log pi_rm(y_t) + entropy of pi_rm at t) (docs/token-rm.md, "Making it learn").
    kind: Literal["head", "implicit", "likelihood"] = "head"
    implicit_beta: float = 1.0
    weighting: Literal["threshold", "topk"] = "threshold"
    pos_threshold: float = 0.5
    neg_threshold: float = 0.5
    topk_ratio: float = 0.25
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6, min_lr=4e-7))

    def __post_init__(self) -> None:
        _check(0.0 <= self.pos_threshold < 1.0, "pos_threshold", self.pos_threshold, "must be in [0, 1)")
        _check(0.0 <= self.neg_threshold < 1.0, "neg_threshold", self.neg_threshold, "must be in [0, 1)")
        _check(0.0 < self.topk_ratio <= 1.0, "topk_ratio", self.topk_ratio, "must be in (0, 1]")
        _check(self.implicit_beta > 0.0, "implicit_beta", self.implicit_beta, "must be > 0")


@dataclass(frozen=True)
class TrainConfig:
    """The DeepSpeed training stage."""

    zero_stage: Literal[0, 1, 2, 3] = 2
    micro_batch_tokens: int = 16384  # token budget of one micro-batch (gradient accumulation)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # HF-format actor checkpoints are written every step (the rollout engine reloads them);
    # 0 keeps all, N keeps the newest N plus every run.eval_every-th step (a 7B one is 15 GB).
    keep_hf_checkpoints: int = 0
    checkpoint_dir: str = "checkpoints"  # local; a run's checkpoints go to <checkpoint_dir>/<run_id>
    # Where the DeepSpeed step runs: "inprocess" (one rank inside the run's process) or a
    # training group of nnodes x nproc_per_node ranks started by the run under torchrun or the
    # deepspeed launcher, alive for the whole run (oreal_core/train/group.py).
    launcher: Literal["inprocess", "torchrun", "deepspeed"] = "inprocess"
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # "host:port" of the c10d rendezvous; None = this host (one node)
    hostfile: str | None = None  # deepspeed launcher's hostfile (multi-node)
    # "host:port" every rank reaches the run's control store on; None = loopback, any free port.
    control_endpoint: str | None = None
    start_timeout_s: float = 600.0  # the group must be up (every node joined, state restored) by then
    heartbeat_timeout_s: float = 120.0  # a rank silent this long is declared hung and the group stopped

    def __post_init__(self) -> None:
        _check(self.micro_batch_tokens >= 1, "micro_batch_tokens", self.micro_batch_tokens, "must be >= 1")
        _check(self.nproc_per_node >= 1, "nproc_per_node", self.nproc_per_node, "must be >= 1")
        _check(self.nnodes >= 1, "nnodes", self.nnodes, "must be >= 1")
        _check(self.launcher != "inprocess" or self.nproc_per_node * self.nnodes == 1, "launcher", self.launcher,
               f"runs one rank; nproc_per_node x nnodes = {self.nproc_per_node * self.nnodes} needs torchrun or deepspeed")
        _check(self.nnodes == 1 or (self.rdzv_endpoint or self.hostfile) and self.control_endpoint, "nnodes",
               self.nnodes, "more than one node needs train.rdzv_endpoint (or hostfile) and train.control_endpoint")
        _check(self.start_timeout_s > 0, "start_timeout_s", self.start_timeout_s, "must be > 0")
        _check(self.heartbeat_timeout_s > 0, "heartbeat_timeout_s", self.heartbeat_timeout_s, "must be > 0")
        _check(self.keep_hf_checkpoints >= 0, "keep_hf_checkpoints", self.keep_hf_checkpoints, "must be >= 0 (0 = keep all)")
