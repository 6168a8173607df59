"""Weights packed for vLLM's RPC come back bit-identical (the engine-side half is tested in
test_vllm_engine.py against a real engine)."""

import msgspec
import pytest
import torch

from oreal_core.rollout.vllm_weights import pack_weights, unpack_weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pack_unpack_round_trip_through_msgpack(dtype):
    weights = {"model.embed_tokens.weight": torch.randn(7, 5).to(dtype), "lm_head.weight": torch.randn(3, 5).to(dtype),
               "model.norm.weight": torch.randn(5).to(dtype), "scalar": torch.tensor(2.5).to(dtype),
               "strided": torch.randn(4, 6).to(dtype).t()}  # non-contiguous, as a transposed view
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(pack_weights(weights)))  # what vLLM's channel does
    back = dict(unpack_weights(wire))
    assert back.keys() == weights.keys()
    for name, tensor in weights.items():
        assert back[name].dtype == dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name], tensor), name
