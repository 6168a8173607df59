"""The configuration tree: one frozen dataclass per section, checked when built.

The sections of sampling and grading live in ``sampling.py``, those of the update in
``training.py``; this module holds the run-level ones and the tree (:class:`OrealConfig`).

Every knob of OREAL_SPEC.md §3 lives here once, with its default taken from the reference
code (``InternLM/OREAL`` configs) unless a comment says otherwise. Range checks run in
``__post_init__`` and raise :class:`ConfigError` naming the field and the bad value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from oreal_core.config.checks import SEED_LIMIT, SHOWN_CHARS, ConfigError, _check, shown  # noqa: F401 - re-exported
from oreal_core.config.monitor import AlarmConfig, MonitorConfig  # noqa: F401 - re-exported
from oreal_core.config.retrain import RetrainConfig  # noqa: F401 - re-exported
from oreal_core.config.sampling import JudgeConfig, RolloutConfig, VerifierConfig  # noqa: F401 - re-exported
from oreal_core.config.tracking import TrackingConfig  # noqa: F401 - re-exported
from oreal_core.config.training import (  # noqa: F401 - re-exported
    ActorConfig,
    AlgoConfig,
    LossConfig,
    OptimConfig,
    TokenRMConfig,
    TrainConfig,
)

NOT_IDENTITY = ("monitor", "tracking", "retrain")  # sections left out of OrealConfig.hash (they change no result)


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

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
        unknown = [g for g in self.retrain.guard_benchmarks if g not in self.eval.benchmarks]
        _check(not unknown, "retrain.guard_benchmarks", self.retrain.guard_benchmarks,
               f"{unknown} not in eval.benchmarks={shown(self.eval.benchmarks)} (a guard must be evaluated)")

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
