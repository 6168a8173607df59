"""The model registry in the lake: lineages, their champion, and every decision with its
reason (DESIGN.md §10, docs/registry.md). ``Registry`` is the API the CLI and the retraining
cycle share; the DuckDB views ``models`` and ``model_decisions`` are registry/views.py."""

from oreal_core.registry.decisions import Decision, EvalResult, Provenance
from oreal_core.registry.errors import DecisionConflict, ModelNotFound, RegistryError
from oreal_core.registry.fold import LineageState, ModelState
from oreal_core.registry.registry import Registry, lineage_of

__all__ = ["Decision", "DecisionConflict", "EvalResult", "LineageState", "ModelNotFound", "ModelState",
           "Provenance", "Registry", "RegistryError", "lineage_of"]
