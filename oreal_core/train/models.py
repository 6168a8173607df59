"""The three models of a step: actor, frozen reference, token-level RM (OREAL_SPEC.md §2).

All three are loaded by path from one HF-format start policy (Algorithm 1, line 2:
pi_0 = w_0 = pi_sft). Each is wrapped in a small module whose forward returns per
response token values, so DeepSpeed's engine forward (and its ZeRO-3 parameter hooks)
runs the whole computation:

* :class:`ResponseLogProbs`: log pi(y_t | x, y_<t) and the policy's entropy, (B, T);
* :class:`TokenRewardModel`: the policy's transformer with its LM head replaced by a
  bias-free Linear(hidden -> 1), zero-initialised so every score starts at 0 (q = 0.5);
* :class:`ImplicitTokenRM` (``token_rm.kind: implicit``): the whole policy LM, whose token
  score is beta * log(pi_rm / pi_ref) of the sampled token (PRIME's implicit process reward,
  arXiv 2502.01456); also 0 everywhere at the start, since pi_rm = pi_ref. With
  ``token_rm.kind: likelihood`` the baseline is the RM's own expected log-prob instead of
  the reference's: s_t = beta * (log pi_rm(y_t) + H(pi_rm(. | y_<t))), how much likelier the
  sampled token was than a typical draw, which starts from the policy's own likelihood.

Both RMs take the same arguments (the targets and the reference's log-probs, which only the
implicit one reads), so the trainer calls either alike.

Only the hidden states at response positions go through a head, so a 150k-token vocab
costs (B, T, V) logits, not (B, L, V).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from oreal_core.config import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, on_gpu: bool) -> torch.dtype:
    """``auto`` is bf16 on GPU (the paper's setting) and fp32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    return DTYPES[name]


def resolve_attention(name: str, on_gpu: bool) -> str:
    """``auto`` is flash-attn 2 where it is installed on a GPU, else PyTorch SDPA."""
    if name != "auto":
        return name
    return "flash_attention_2" if on_gpu and find_spec("flash_attn") else "sdpa"


@dataclass(frozen=True)
class LoadSpec:
    path: Path
    dtype: torch.dtype
    attention: str
    gradient_checkpointing: bool


def load_spec(cfg: ModelConfig, path: str | Path, on_gpu: bool, key: str = "model.policy") -> LoadSpec:
    """``key`` is the setting ``path`` came from, named in the error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{key}={str(path)!r}: not an HF model directory (no config.json)")
    return LoadSpec(path, resolve_dtype(cfg.dtype, on_gpu), resolve_attention(cfg.attn_implementation, on_gpu),
                    cfg.gradient_checkpointing)


def load_causal_lm(spec: LoadSpec) -> PreTrainedModel:
    model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=spec.dtype, attn_implementation=spec.attention)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False  # training never decodes; the KV cache only costs memory
    return model


def hidden_at(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              positions: torch.Tensor) -> torch.Tensor:
    """Last hidden states at ``positions``: (B, L) inputs, (B, T) positions -> (B, T, H)."""
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    index = positions[..., None].expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, index)


class ResponseLogProbs(nn.Module):
    """A causal LM that returns (log-prob of each target token, entropy), both (B, T) fp32.

    ``with_entropy=False`` returns None for the entropy: where nobody reads it (the reference,
    the implicit RM) that saves an exp and a product over the (B, T, vocab) log-probs, 1.6 GB
    per 8,192 tokens at a 49k vocabulary.
    """

    def __init__(self, model: PreTrainedModel, with_entropy: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_entropy = with_entropy

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = hidden_at(self.model.base_model, input_ids, attention_mask, positions)
        logits = self.model.get_output_embeddings()(hidden).float()
        logp_all = F.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
        if not self.with_entropy:
            return logp, None
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy


class TokenRewardModel(nn.Module):
    """The policy's transformer with a scalar head: scores (B, T) fp32, one per response token."""

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1, bias=False)
        nn.init.zeros_(self.head.weight)  # as the reference's lazy init leaves it: s_t = 0, q = 0.5
        self.head.to(next(backbone.parameters()).dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                targets: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None) -> torch.Tensor:
        hidden = hidden_at(self.backbone, input_ids, attention_mask, positions)
        return self.head(hidden).squeeze(-1).float()


class ImplicitTokenRM(nn.Module):
    """A copy of the policy LM as token RM: s_t = beta * (log pi_rm(y_t) - baseline_t), (B, T) fp32.

    The baseline is the reference's log-prob of the token (``implicit``) or minus the RM's own
    entropy at t (``likelihood``). Trained by the same sequence BCE as the head RM, so the
    gradient moves the log-probs of the sampled tokens rather than a head on the hidden
    states. Tried because the policy's log-probability separates a group's correct sample
    from its incorrect one better than a probe on its hidden states; on the tiny task
    neither kind learns (docs/token-rm.md, "Making it learn").
    """

    def __init__(self, model: PreTrainedModel, beta: float, baseline: str = "reference") -> None:
        super().__init__()
        self.lm = ResponseLogProbs(model, with_entropy=baseline == "entropy")
        self.beta = beta
        self.baseline = baseline  # "reference": log pi_ref(y_t); "entropy": -H of the RM's own distribution

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                targets: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None) -> torch.Tensor:
        if targets is None or (ref_logp is None and self.baseline == "reference"):
            raise ValueError("ImplicitTokenRM: needs the response targets and the reference's log-probs")
        logp, entropy = self.lm(input_ids, attention_mask, positions, targets)  # entropy: no gradient
        baseline = ref_logp.float() if self.baseline == "reference" else -entropy
        return self.beta * (logp - baseline)


def build_actor(spec: LoadSpec) -> ResponseLogProbs:
    return ResponseLogProbs(load_causal_lm(spec)).train()


def build_reference(spec: LoadSpec, device: torch.device) -> ResponseLogProbs:
    """A frozen copy: eval mode, no gradients, never handed to an optimiser."""
    ref = ResponseLogProbs(load_causal_lm(LoadSpec(spec.path, spec.dtype, spec.attention, False)), with_entropy=False)
    ref.requires_grad_(False)
    return ref.eval().to(device)


def build_token_rm(spec: LoadSpec, kind: str = "head", beta: float = 1.0) -> TokenRewardModel | ImplicitTokenRM:
    model = load_causal_lm(spec)
    if kind in ("implicit", "likelihood"):
        return ImplicitTokenRM(model, beta, "reference" if kind == "implicit" else "entropy").train()
    backbone = model.base_model  # the LM head is dropped with ``model``
    return TokenRewardModel(backbone, model.config.hidden_size).train()
