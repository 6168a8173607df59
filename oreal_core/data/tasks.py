"""The synthetic task as configured: its spec and its deterministic splits."""

from __future__ import annotations

from oreal_core.config import SyntheticTaskConfig
from oreal_core.data.synthetic import ArithmeticSpec, Problem, generate


def synthetic_spec(cfg: SyntheticTaskConfig) -> ArithmeticSpec:
    return ArithmeticSpec(cfg.min_operands, cfg.max_operands, cfg.max_value, cfg.operators)


def synthetic_splits(cfg: SyntheticTaskConfig) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out) problems; disjoint, and the same for the same config."""
    spec = synthetic_spec(cfg)
    return generate(spec, "train", cfg.train_size, cfg.seed), generate(spec, "heldout", cfg.heldout_size, cfg.seed)
