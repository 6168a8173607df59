import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def sft_cache_dir(tmp_path_factory):
    """One SFT cache per test session: the tiny policy's warm-up (minutes) runs once and every
    test that needs the SFT-warmed policy of the same config reuses it."""
    shared = os.environ.get("OREAL_TEST_SFT_CACHE")  # e.g. runs/sft, to reuse across sessions
    return shared or tmp_path_factory.mktemp("sft-cache")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
