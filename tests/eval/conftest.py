"""A tiny policy (built locally, untrained) and configs that evaluate it with the HF engine."""

from __future__ import annotations

import pytest

from oreal_core.config import OrealConfig, load_config
from oreal_core.models.tiny import build_tiny_policy
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.verify.verifier import Verifier

STOP = "<|im_end|>"


def eval_cfg(lake_dir, *overrides: str, engine: str = "hf") -> OrealConfig:
    """tiny-cpu, with room for real benchmark prompts and a short answer budget (fast)."""
    return load_config("tiny-cpu", [f"store.uri={lake_dir}", f"rollout.engine={engine}", "rollout.max_length=512",
                                    "eval.max_new_tokens=16", "eval.limit=6", "eval.commit_every=4", *overrides])


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("eval-policy") / "step=000020", seed=0)


@pytest.fixture(scope="session")
def hf_engine(policy_dir):
    with HFEngine(policy_dir, stop_word=STOP) as engine:
        yield engine


@pytest.fixture(scope="session")
def verifier():
    with Verifier(load_config("tiny-cpu").verifier) as v:
        yield v
