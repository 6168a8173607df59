"""The model registry: which checkpoint is each lineage's champion, and every decision that
made it so (DESIGN.md §10, docs/registry.md). Storage: log.py; rules and state: fold.py.

Every change is one decision appended to the lineage's log, made on the state it was read
from: if another decision was committed in between, the write is refused (DecisionConflict)
and nothing changes. A register alone is retried on a conflict, because its validity does
not depend on the state; a promote, reject or rollback is not, because it might no longer be
what its author meant.
"""

from __future__ import annotations

import re

from oreal_core.config import StoreConfig
from oreal_core.registry.decisions import Action, Decision, EvalResult, Provenance
from oreal_core.registry.errors import DecisionConflict, ModelNotFound, RegistryError
from oreal_core.registry.fold import LineageState, ModelState, apply, fold
from oreal_core.registry.log import DecisionLog, check_lineage
from oreal_core.store.filesystems import StoreLocation, open_location
from oreal_core.store.manifest import utc_now

_MODEL_ID = re.compile(r"(?P<lineage>.+)-v(?P<n>[1-9][0-9]*)")
_REGISTER_ATTEMPTS = 5


def model_id_for(lineage: str, number: int) -> str:
    """``<lineage>-v<n>``: the n-th model registered in the lineage (unique across lineages, and
    the lineage is read back from it)."""
    return f"{lineage}-v{number}"


def lineage_of(model_id: str) -> str:
    match = _MODEL_ID.fullmatch(model_id)
    if match is None:
        raise ModelNotFound(f"model id {model_id!r}: expected <lineage>-v<n>, e.g. tiny-v3")
    return check_lineage(match["lineage"])


class Registry:
    def __init__(self, location: StoreLocation) -> None:
        self.log = DecisionLog(location)

    @classmethod
    def open(cls, cfg: StoreConfig) -> Registry:
        return cls(open_location(cfg))

    # ------------------------------------------------------------------ reading

    def lineages(self) -> list[str]:
        return self.log.lineages()

    def state(self, lineage: str) -> LineageState:
        return fold(lineage, self.log.read_strict(check_lineage(lineage)))

    def decisions(self, lineage: str) -> list[Decision]:
        return self.log.read_strict(check_lineage(lineage))

    def model(self, model_id: str) -> ModelState:
        lineage = lineage_of(model_id)
        found = self.state(lineage).model(model_id)
        if found is None:
            raise ModelNotFound(f"no model {model_id} in the registry (lineage {lineage})")
        return found

    def champion(self, lineage: str) -> ModelState | None:
        state = self.state(lineage)
        return None if state.champion is None else state.model(state.champion)

    # ------------------------------------------------------------------ decisions

    def register(self, lineage: str, provenance: Provenance, evals: tuple[EvalResult, ...] = (), *,
                 reason: str = "registered", by: str = "cli") -> ModelState:
        """Record a candidate; returns it with its new id."""
        for attempt in range(_REGISTER_ATTEMPTS):
            state = self.state(lineage)
            model_id = model_id_for(lineage, len(state.models) + 1)
            try:
                self._commit(state, "register", model_id, reason, by, provenance=provenance, evals=evals)
            except DecisionConflict:
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise
                continue
            return self.model(model_id)
        raise AssertionError("unreachable")

    def promote(self, model_id: str, reason: str, *, by: str = "cli", evidence: str | None = None,
                based_on: LineageState | None = None) -> LineageState:
        """Make ``model_id`` its lineage's champion; the current champion (if any) is retired.
        ``based_on``: the state the caller decided on (default: read now)."""
        state = based_on or self.state(lineage_of(model_id))
        return self._commit(state, "promote", model_id, reason, by, displaced=state.champion, evidence=evidence)

    def reject(self, model_id: str, reason: str, *, by: str = "cli", evidence: str | None = None,
               based_on: LineageState | None = None) -> LineageState:
        state = based_on or self.state(lineage_of(model_id))
        return self._commit(state, "reject", model_id, reason, by, evidence=evidence)

    def rollback(self, lineage: str, reason: str, *, by: str = "cli",
                 based_on: LineageState | None = None) -> LineageState:
        """The previous champion becomes champion again; the current one is retired."""
        state = based_on or self.state(lineage)
        if state.champion is None or not state.previous_champions:
            raise RegistryError(f"lineage {lineage} has no previous champion to roll back to (champion: "
                                f"{state.champion or 'none'})")
        return self._commit(state, "rollback", state.previous_champions[-1], reason, by, displaced=state.champion)

    def _commit(self, state: LineageState, action: Action, model_id: str, reason: str, by: str, *,
                displaced: str | None = None, provenance: Provenance | None = None,
                evals: tuple[EvalResult, ...] = (), evidence: str | None = None) -> LineageState:
        if not reason.strip():
            raise RegistryError(f"{action} of {model_id}: a decision needs a reason")
        decision = Decision(lineage=state.lineage, seq=state.head + 1, follows=state.head, action=action,
                            model_id=model_id, reason=reason, decided_at=utc_now(), decided_by=by,
                            displaced=displaced, provenance=provenance, evals=evals, evidence=evidence)
        after = apply(state, decision)  # the rules, before anything is written
        self.log.append(decision)
        return after
