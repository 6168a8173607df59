"""How an iteration is shown to people: a terminal line and a Prefect markdown artifact."""

from __future__ import annotations

from collections.abc import Sequence

from oreal_core.pipeline.stages import StageResult

HEADLINE = ("accuracy", "kept_samples", "loss", "loss_pos", "loss_neg", "loss_kl", "kl", "entropy",
            "rm_loss", "rm_accuracy", "actor_lr", "response_tokens_mean", "truncated_frac",
            "health/length_p90", "health/logprob_abs_delta_mean", "health/judge_error_rate", "health/multi_boxed_frac",
            "health/repetitive_frac")


def artifact_key(run_id: str, step: int, what: str = "") -> str:
    """The Prefect artifact key of a step (keys allow lowercase letters, digits and dashes only)."""
    safe = "".join(c if c.isalnum() else "-" for c in run_id.lower())
    return f"{safe}-step-{step}" + (f"-{what}" if what else "")


def progress_line(step: int, total: int, metrics: dict[str, float], seconds: float) -> str:
    done = step + 1
    bar = "#" * round(20 * done / total) + "." * (20 - round(20 * done / total))
    shown = " ".join(f"{k}={metrics[k]:.3g}" for k in ("accuracy", "kept_samples", "loss", "kl") if k in metrics)
    return f"[{bar}] step {done}/{total} {shown} ({seconds:.1f}s)"


def iteration_markdown(run_id: str, step: int, results: Sequence[StageResult], lake_uri: str) -> str:
    metrics: dict[str, float] = {}
    for r in results:
        metrics.update(r.metrics)
    rows = "\n".join(f"| {k} | {metrics[k]:.4g} |" for k in HEADLINE if k in metrics)
    stages = "\n".join(f"| {r.stage} | {'committed earlier' if r.skipped else f'{r.seconds:.2f} s'} | "
                       f"{r.ref.rows} rows | `{r.ref.uri}` |" for r in results)
    return (f"# Run `{run_id}`, iteration {step}\n\n| metric | value |\n|---|---|\n{rows}\n\n"
            f"| stage | time | artefact | uri |\n|---|---|---|---|\n{stages}\n\n"
            f"Lake: `{lake_uri.rsplit('/', 2)[0]}`. Query it: `oreal query \"SELECT * FROM verdicts "
            f"WHERE run_id = '{run_id}' AND step = {step}\"`\n")
