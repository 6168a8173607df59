"""Evaluation on math benchmarks: estimators (pure) and the evaluation runner."""

from oreal_core.eval.estimators import Interval, mean_with_bootstrap, pass_at_k

__all__ = ["Interval", "mean_with_bootstrap", "pass_at_k"]
