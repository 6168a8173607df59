"""The trainer's weights into a running vLLM engine, in memory.

vLLM serialises ``collective_rpc`` arguments with msgpack; tensors nested in untyped
arguments arrive at the worker as plain lists, not tensors. So the weights travel as raw
bytes with their dtype and shape, and :class:`WeightReceiver`, mixed into vLLM's worker
through ``LLM(worker_extension_cls=...)`` (the extension point verl and OpenRLHF use for
weight sync), rebuilds the tensors and hands them to vLLM's own in-place
``reload_weights(weights_iterator=...)``, the same loader a reload from disk uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

Packed = list[tuple[str, str, list[int], bytes]]  # (name, dtype, shape, raw bytes)


def pack_weights(weights: Mapping[str, torch.Tensor]) -> Packed:
    """HF-named tensors as (name, dtype, shape, bytes): what msgpack carries intact."""
    packed = []
    for name, tensor in weights.items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        packed.append((name, str(flat.dtype).removeprefix("torch."), list(tensor.shape),
                       flat.view(torch.uint8).numpy().tobytes()))
    return packed


def unpack_weights(packed: Packed) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors back, one at a time (the loader copies each into its parameter)."""
    for name, dtype, shape, raw in packed:
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        yield name, data.view(getattr(torch, dtype)).reshape(shape)


class WeightReceiver:
    """vLLM worker extension: ``collective_rpc("load_packed_weights", args=(packed,))``."""

    def load_packed_weights(self, packed: Packed) -> None:
        self.reload_weights(weights_iterator=unpack_weights(packed))  # vLLM Worker.reload_weights
