import pytest
import torch

from oreal_core.models.tiny import build_tiny_policy
from oreal_core.types import ScoredBatch, ScoredSample

POS_TOKEN, NEG_TOKEN = 40, 200  # a separable toy task: correct answers use one token, wrong the other


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="session")
def other_policy_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("other-policy"), seed=1)


def toy_batch(step: int, prompts: int = 4, seed: int = 0, response_len: int = 12) -> ScoredBatch:
    """One correct and one incorrect sample per prompt (Algorithm 1's pair selection);
    correct responses repeat POS_TOKEN, incorrect ones NEG_TOKEN, lengths vary."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for p in range(prompts):
        prompt = tuple(torch.randint(3, 250, (6 + p,), generator=gen).tolist())
        for idx, positive in enumerate((True, False)):
            n = response_len + int(torch.randint(0, 6, (1,), generator=gen))
            token = POS_TOKEN if positive else NEG_TOKEN
            samples.append(ScoredSample(f"q{p}", idx, prompt, (token,) * n, 0.8 if positive else -0.8, positive))
    return ScoredBatch(step=step, samples=tuple(samples))
