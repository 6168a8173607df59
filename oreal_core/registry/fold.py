"""The registry's current state: a fold over a lineage's decision log (pure, no I/O).

``check`` holds the rules a new decision must satisfy against the state it follows; a
writer calls it before committing, and the fold calls it again for every decision it
replays, so the ``models`` view and the writer agree on one definition. The rules keep
exactly one champion per lineage: a promote or rollback names the champion it displaces,
and that must be the current one.

Rollback follows the lineage's champion history as a stack: a promote pushes the champion it
displaces, a rollback pops the most recent one back into place (A -> B -> C, rollback: B,
rollback: A, rollback: refused).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from oreal_core.registry.decisions import Decision, EvalResult, Provenance
from oreal_core.registry.errors import RegistryError

log = logging.getLogger(__name__)

STATUSES = ("candidate", "champion", "rejected", "retired")


@dataclass(frozen=True)
class ModelState:
    model_id: str
    lineage: str
    status: str  # one of STATUSES
    provenance: Provenance
    evals: tuple[EvalResult, ...]
    created_at: str
    updated_at: str
    reason: str  # of the latest decision about this model
    decision_seq: int  # that decision


@dataclass(frozen=True)
class LineageState:
    lineage: str
    head: int = 0  # seq of the latest decision (0: none yet)
    models: tuple[ModelState, ...] = ()  # in order of registration
    champion: str | None = None
    previous_champions: tuple[str, ...] = ()  # the rollback stack, oldest first

    def model(self, model_id: str) -> ModelState | None:
        return next((m for m in self.models if m.model_id == model_id), None)


def check(state: LineageState, decision: Decision) -> None:
    """Raise RegistryError unless ``decision`` may follow ``state``."""
    current = state.model(decision.model_id)
    if decision.action == "register":
        _require(current is None, f"model {decision.model_id} is already registered")
        _require(decision.provenance is not None, f"registering {decision.model_id} needs its provenance")
        return
    _require(current is not None, f"no model {decision.model_id} in lineage {state.lineage}")
    if decision.action == "reject":
        _require(current.status == "candidate", f"only a candidate can be rejected; {decision.model_id} is "
                                                f"{current.status}")
        return
    _require(decision.displaced == state.champion,
             f"{decision.action} of {decision.model_id} names {decision.displaced or 'no model'} as the champion it "
             f"replaces, but the champion is {state.champion or 'none'}")
    if decision.action == "promote":
        _require(current.status != "champion", f"{decision.model_id} is already the champion of {state.lineage}")
        return
    _require(bool(state.previous_champions) and decision.model_id == state.previous_champions[-1],
             f"rollback in {state.lineage} must restore {state.previous_champions[-1] if state.previous_champions else 'a previous champion, and there is none'}")


def apply(state: LineageState, decision: Decision) -> LineageState:
    """The state after ``decision`` (checked first)."""
    check(state, decision)
    status = {"register": "candidate", "promote": "champion", "reject": "rejected", "rollback": "champion"}
    models = {m.model_id: m for m in state.models}
    if decision.action == "register":
        models[decision.model_id] = ModelState(
            model_id=decision.model_id, lineage=decision.lineage, status="candidate",
            provenance=decision.provenance, evals=decision.evals, created_at=decision.decided_at,
            updated_at=decision.decided_at, reason=decision.reason, decision_seq=decision.seq)
    else:
        models[decision.model_id] = _updated(models[decision.model_id], status[decision.action], decision)
    champion, stack = state.champion, state.previous_champions
    if decision.action in ("promote", "rollback"):
        if decision.displaced is not None:
            models[decision.displaced] = _updated(models[decision.displaced], "retired", decision)
        champion = decision.model_id
        if decision.action == "rollback":
            stack = stack[:-1]
        elif decision.displaced is not None:
            stack = (*stack, decision.displaced)
    return LineageState(lineage=state.lineage, head=decision.seq, models=tuple(models.values()),
                        champion=champion, previous_champions=stack)


def fold(lineage: str, decisions: Iterable[Decision], *, strict: bool = True) -> LineageState:
    """Replay a lineage's log. Strict (a writer's view): any decision that does not apply is an
    error. Lenient (the views, after skipping an unreadable file): it is skipped with a warning."""
    state = LineageState(lineage)
    for decision in sorted(decisions, key=lambda d: d.seq):
        try:
            state = apply(state, decision)
        except RegistryError as exc:
            if strict:
                raise
            log.warning("registry: lineage %s decision %d does not apply (%s); the models view skips it",
                        lineage, decision.seq, exc)
    return state


def _updated(model: ModelState, status: str, decision: Decision) -> ModelState:
    return dataclasses.replace(model, status=status, updated_at=decision.decided_at, reason=decision.reason,
                               decision_seq=decision.seq)


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise RegistryError(why)
