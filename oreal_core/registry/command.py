"""``oreal models``: list, show, register, promote and roll back registry models (docs/registry.md).

Rendering and argument checks only; every change goes through Registry, the API the
retraining cycle uses too, so a manual decision is recorded like any other, with its reason.
"""

from __future__ import annotations

from pathlib import Path

from oreal_core.config import OrealConfig
from oreal_core.registry.decisions import Decision, EvalResult, Provenance
from oreal_core.registry.errors import RegistryError
from oreal_core.registry.registry import Registry, lineage_of
from oreal_core.store import Lake

ACTIONS = ("list", "show", "register", "promote", "reject", "rollback")


def run_models_command(cfg: OrealConfig, action: str, target: str | None = None, *, reason: str | None = None,
                       lineage: str | None = None, checkpoint: str | None = None, run_id: str | None = None,
                       step: int | None = None, parent: str | None = None) -> str:
    registry = Registry.open(cfg.store)
    if action == "list":
        return list_models(registry)
    if action == "register":
        return _register(cfg, registry, lineage, checkpoint, run_id, step, reason, parent)
    if not target:
        raise RegistryError(f"models {action}: name the {'lineage' if action == 'rollback' else 'model id'}")
    if action == "show":
        return show_model(registry, target)
    if action in ("promote", "reject") and not reason:
        raise RegistryError(f"models {action}: --reason TEXT is required (it is recorded with the decision)")
    if action == "promote":
        state = registry.promote(target, reason)
        return f"{target} is now the champion of {state.lineage}\n" + list_models(registry, state.lineage)
    if action == "reject":
        state = registry.reject(target, reason)
        return f"{target} is rejected; the champion of {state.lineage} stays {state.champion or 'none'}\n" + \
            list_models(registry, state.lineage)
    if action == "rollback":
        state = registry.rollback(target, reason or "manual rollback")
        return f"rolled back: {state.champion} is again the champion of {target}\n" + list_models(registry, target)
    raise RegistryError(f"models: unknown action {action!r}; one of {', '.join(ACTIONS)}")


def list_models(registry: Registry, only: str | None = None) -> str:
    states = [registry.state(name) for name in ([only] if only else registry.lineages())]
    rows = [(m.lineage, m.model_id, m.status, _pass1(m.evals), m.created_at[:19].replace("T", " "))
            for state in states for m in state.models]
    if not rows:
        return "no models registered (oreal models register --lineage NAME --checkpoint DIR)"
    header = ("lineage", "model", "status", "pass@1 [95 % interval]", "created (UTC)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def show_model(registry: Registry, model_id: str) -> str:
    model = registry.model(model_id)
    p = model.provenance
    lines = [f"model       {model.model_id}", f"lineage     {model.lineage}", f"status      {model.status}",
             f"checkpoint  {p.checkpoint_uri}", f"parent      {p.parent_model_id or '-'}",
             f"run         {p.run_id or '-'} step {'-' if p.step is None else p.step}",
             f"config      {p.config_hash or '-'}", f"prompts     {p.prompts_hash or '-'}",
             f"code        {p.code_revision or '-'}", f"created     {model.created_at}", "evaluations"]
    lines += [f"  {e.bench}: pass@1 {e.pass1:.3f} [{e.pass1_low:.3f}, {e.pass1_high:.3f}] on {e.problems} problems "
              f"x {e.samples_per_problem} (records: eval run {e.eval_run_id} step {e.eval_step})"
              for e in model.evals] or ["  none"]
    lines.append("decisions")
    lines += [f"  {_describe(d)}" for d in registry.decisions(model.lineage)
              if model_id in (d.model_id, d.displaced)]
    return "\n".join(lines)


def _register(cfg: OrealConfig, registry: Registry, lineage: str | None, checkpoint: str | None,
              run_id: str | None, step: int | None, reason: str | None, parent: str | None) -> str:
    # policy_dir loads transformers: imported only when registering
    from oreal_core.registry.evals import eval_results
    from oreal_core.rollout.policy_dir import check_model_dir

    if not lineage or not checkpoint:
        raise RegistryError("models register: --lineage NAME and --checkpoint DIR are required")
    if (run_id is None) != (step is None):
        raise RegistryError("models register: give --run-id and --step together (the eval records' partition)")
    lineage_of(f"{lineage}-v1")  # the lineage name's rule, before the model folder is read
    check_model_dir(checkpoint, "--checkpoint")
    if parent is not None and registry.model(parent).lineage != lineage:  # ModelNotFound names an unknown one
        raise RegistryError(f"models register: --parent {parent} is of another lineage than {lineage}")
    uri = Path(checkpoint).expanduser().resolve().as_posix()
    evals: tuple[EvalResult, ...] = ()
    provenance = Provenance(checkpoint_uri=uri, parent_model_id=parent)
    if run_id is not None:
        lake = Lake.open(cfg.store)
        run = lake.run(run_id)
        provenance = Provenance(checkpoint_uri=uri, parent_model_id=parent, run_id=run_id, step=step,
                                config_hash=run.config_hash,
                                prompts_hash=run.prompts_hash, code_revision=run.code_version)
        evals = eval_results(lake, run_id, step, checkpoint)
    model = registry.register(lineage, provenance, evals, reason=reason or "registered by hand")
    note = "" if evals or run_id is None else (
        f"\n(no eval records at run {run_id} step {step}: `oreal eval --checkpoint {checkpoint} --run-id {run_id} "
        f"--step {step}` writes them)")
    return f"registered {model.model_id} as a candidate of {lineage}{note}\n" + list_models(registry, lineage)


def _pass1(evals: tuple[EvalResult, ...]) -> str:
    return ", ".join(f"{e.bench} {e.pass1:.3f} [{e.pass1_low:.3f}, {e.pass1_high:.3f}]" for e in evals) or "-"


def _describe(d: Decision) -> str:
    displaced = f" (retires {d.displaced})" if d.displaced else ""
    return f"#{d.seq} {d.decided_at[:19].replace('T', ' ')} {d.action} {d.model_id}{displaced} by {d.decided_by}: {d.reason}"

