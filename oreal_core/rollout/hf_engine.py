"""Rollout with transformers ``generate``: the engine for machines without vLLM.

Same outputs as the vLLM engine. Prompts are sampled in batches of ``prompts_per_batch``
(all K samples of a prompt in the same batch); the torch generator is reseeded before each
batch from the seed and the batch's prompt ids, so the same seed, prompts and weights give
the same samples. (vLLM seeds each prompt alone; here a prompt's samples also depend on
its batch-mates, the price of batching, which is most of HF's speed.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from oreal_core.rollout.base import RolloutEngine, RolloutEngineError, SamplingSpec
from oreal_core.rollout.policy_dir import (
    check_same_architecture,
    inspect_policy_dir,
    load_policy_tokenizer,
)
from oreal_core.types import Prompt

Group = list[tuple[list[int], list[float]]]


class HFEngine(RolloutEngine):
    name = "hf"

    def __init__(self, model_dir: str | Path, *, stop_word: str, prompts_per_batch: int = 64,
                 model: PreTrainedModel | None = None, tokenizer: PreTrainedTokenizerFast | None = None) -> None:
        self.info = None
        if model is None:
            self.info = inspect_policy_dir(model_dir)
            tokenizer = load_policy_tokenizer(self.info)
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        context = int(model.config.max_position_embeddings)
        super().__init__(tokenizer, context, stop_word)
        self.model = model.eval()
        self.prompts_per_batch = prompts_per_batch

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, stop_word: str,
                   prompts_per_batch: int = 64) -> HFEngine:
        """Sample from a model in memory (used by SFT's held-out checks); no reload support."""
        return cls("", stop_word=stop_word, prompts_per_batch=prompts_per_batch, model=model, tokenizer=tokenizer)

    def reload_weights(self, model_dir: str | Path, policy_version: int) -> None:
        if self.info is None:
            raise RolloutEngineError("reload_weights: this engine samples an in-memory model; open one on a directory")
        new = inspect_policy_dir(model_dir)
        check_same_architecture(self.info, new)
        state = {}
        for shard in sorted(Path(model_dir).glob("*.safetensors")):
            state.update(load_file(str(shard)))
        self.load_weights(state, policy_version)
        self.info = new

    def load_weights(self, weights: Mapping[str, torch.Tensor], policy_version: int) -> None:
        missing, unexpected = self.model.load_state_dict(dict(weights), strict=False)
        if missing or unexpected:
            raise RolloutEngineError(f"load_weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.policy_version = policy_version

    def _sample(self, prompts: Sequence[Prompt], token_ids: Sequence[tuple[int, ...]],
                spec: SamplingSpec) -> list[Group]:
        groups: list[Group] = []
        with torch.inference_mode():
            for start in range(0, len(token_ids), self.prompts_per_batch):
                chunk = token_ids[start:start + self.prompts_per_batch]
                ids = ",".join(p.prompt_id for p in prompts[start:start + self.prompts_per_batch])
                torch.manual_seed(spec.prompt_seed(ids))
                rows = self._generate(chunk, spec, n=spec.n)
                groups.extend(rows[i:i + spec.n] for i in range(0, len(rows), spec.n))
        return groups

    def _generate(self, batch: Sequence[tuple[int, ...]], spec: SamplingSpec, n: int) -> Group:
        """Left-padded batch generate; returns len(batch) * n (tokens, raw log-probs) rows."""
        pad_id = self.tokenizer.pad_token_id
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + list(ids) for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        sampling = {"do_sample": False} if spec.is_greedy else {
            "do_sample": True, "temperature": spec.temperature, "top_p": spec.top_p, "top_k": spec.top_k}  # 0 disables (None would mean transformers' default of 50)
        out = self.model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=spec.max_new_tokens,
            num_return_sequences=n, eos_token_id=self.stop_token_id, pad_token_id=pad_id,
            return_dict_in_generate=True, output_logits=True, **sampling)
        new_tokens = out.sequences[:, width:]
        raw = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (B*n, T, V): raw distribution
        token_logprobs = raw.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        rows: Group = []
        for tokens, logprobs in zip(new_tokens.tolist(), token_logprobs.tolist(), strict=True):
            length = tokens.index(self.stop_token_id) + 1 if self.stop_token_id in tokens else len(tokens)
            rows.append((tokens[:length], logprobs[:length]))
        return rows
