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


# ``extra`` keys of the log records that flows/console.py turns into the terminal display.
STEP = "oreal_step"  # a finished step: step_record(...)
RESULT = "oreal_result"  # a line to keep on screen (evaluation results, the best checkpoint)
ALARM = "oreal_alarm"  # a health alarm's name, on its warning

_STAGES = ("rollout", "verify", "score", "train")


def step_record(step: int, total: int, metrics: dict[str, float], seconds: float) -> dict:
    """The ``extra`` of a finished step's log record."""
    return {STEP: {"step": step, "total": total, "seconds": seconds,
                   "metrics": {k: v for k, v in metrics.items() if k in ("accuracy", "loss", "kl")
                               or k.startswith("time/")}}}


def status_text(step: dict, step_seconds: list[float], alarms: int) -> str:
    """The terminal's status line after a step: progress, ETA, headline metrics, stage seconds."""
    done, total, metrics = step["step"] + 1, step["total"], step["metrics"]
    recent = step_seconds[-10:]  # the first step carries start-up: a moving mean forgets it
    eta = round(sum(recent) / len(recent) * (total - done))
    bar = "#" * round(10 * done / total) + "." * (10 - round(10 * done / total))
    shown = " ".join(f"{k} {metrics[k]:.3g}" for k in ("accuracy", "loss", "kl") if k in metrics)
    stages = " ".join(f"{s} {metrics[f'time/{s}_s']:.1f}s" for s in _STAGES if f"time/{s}_s" in metrics)
    # Alarms before the stage seconds: a narrow terminal cuts the end of the line.
    return " | ".join(part for part in (f"step {done}/{total} [{bar}] ETA {eta // 60}m{eta % 60:02d}s", shown,
                                        f"{alarms} alarm(s)" if alarms else "", stages) if part)


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
