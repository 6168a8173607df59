"""Evaluation on math benchmarks: estimators (pure) and the evaluation runner.

The runner and the history queries load torch, the engines and DuckDB; import them from
their modules (``oreal_core.eval.runner``, ``oreal_core.eval.history``,
``oreal_core.eval.command``) so that importing the estimators stays cheap.
"""

from oreal_core.eval.estimators import Interval, mean_with_bootstrap, pass_at_k

__all__ = ["Interval", "mean_with_bootstrap", "pass_at_k"]
