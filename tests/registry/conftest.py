"""Registry fixtures: a lake in a tmp folder (or on the S3 test server) and a checkpoint folder."""

from __future__ import annotations

import pytest

from oreal_core.config import StoreConfig
from oreal_core.models.shipped import SHIPPED_ROOT
from oreal_core.registry import Provenance, Registry
from tests.store.conftest import s3_server  # noqa: F401 - the real S3 API on 127.0.0.1, for the S3 cases


@pytest.fixture
def store_cfg(tmp_path) -> StoreConfig:
    return StoreConfig(uri=str(tmp_path / "lake"))


@pytest.fixture
def registry(store_cfg) -> Registry:
    return Registry.open(store_cfg)


@pytest.fixture
def checkpoint() -> str:
    """A real HF model folder (the shipped tiny policy): what `models register` checks."""
    found = sorted(SHIPPED_ROOT.glob("tiny-*"))
    assert found, f"no shipped tiny policy under {SHIPPED_ROOT}"
    return str(found[0])


def provenance(uri: str = "/models/x", **kw) -> Provenance:
    return Provenance(checkpoint_uri=uri, **kw)
