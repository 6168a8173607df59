"""Argument checks shared by the algorithm functions.

Bad input must fail loudly with the argument's name (a NaN that reaches the optimiser
silently ruins a run); these helpers keep those checks one line each at the call site.
"""

from __future__ import annotations

import torch


def require_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(tensor.shape)}")


def require_ndim(name: str, tensor: torch.Tensor, ndim: int) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(tensor.shape)}")


def require_nonempty(name: str, tensor: torch.Tensor) -> None:
    if tensor.numel() == 0:
        raise ValueError(f"{name}: empty (shape {tuple(tensor.shape)})")


def require_finite(name: str, tensor: torch.Tensor, where: torch.Tensor | None = None) -> None:
    """Every value (or every value where ``where`` is True) must be finite."""
    values = tensor.detach() if where is None else tensor.detach()[where]
    if not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(f"{name}: {bad} non-finite value(s) (NaN or inf)")


def require_binary_rewards(name: str, rewards: torch.Tensor) -> None:
    """Rewards must be exactly +1 or -1 (the verifier's outcome reward)."""
    ok = (rewards == 1) | (rewards == -1)
    if not bool(ok.all()):
        bad = rewards[~ok].flatten()[:5].tolist()
        raise ValueError(f"{name}: values must be +1 or -1, found {bad}")


def require_mask(name: str, mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A 0/1 or bool mask of the given shape, returned as bool."""
    require_shape(name, mask, shape)
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{name}: must be boolean or 0/1")
        mask = mask.bool()
    return mask
