import pytest

from oreal_core.verify.rule import new_pool


@pytest.fixture(scope="session")
def rule_pool():
    """One warm pool for the whole area: spawning workers that import sympy costs ~1 s each."""
    with new_pool(2) as pool:
        yield pool
