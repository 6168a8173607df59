"""Our metric names -> the names RL trackers' users already read (verl's convention, which
OpenRLHF, TRL and others largely share), so a dashboard built for them shows an OREAL run.

Pure: no I/O, no tracker imports. The rule, in order:
* a name with a conventional counterpart takes it (CONVENTIONAL);
* stage and trainer seconds go under ``timing_s/``, evaluation results under ``val/``;
* everything else is OREAL's own and keeps its name under ``oreal/`` (the positive and
  negative losses, the token-RM BCE and accuracy, token weight spread, health metrics...).
"""

from __future__ import annotations

# The exact renames. OREAL's actor loss is the whole policy objective of Eq. 11 (positive BC +
# negative PG + KL), which is what verl's pg_loss plots; its parts stay under oreal/.
CONVENTIONAL = {
    "loss": "actor/pg_loss",
    "loss_kl": "actor/kl_loss",
    "kl": "actor/kl_ref",
    "entropy": "actor/entropy",
    "actor_grad_norm": "actor/grad_norm",
    "actor_lr": "actor/lr",
    "mean_reward": "critic/score/mean",
    "accuracy": "critic/accuracy/mean",
    "response_tokens_mean": "response_length/mean",
    "response_tokens_max": "response_length/max",
    "truncated_frac": "response_length/clip_ratio",
    "rollout_tok_s": "perf/throughput",  # sampled tokens per second: the stage an RL step waits on
    "tokens_per_s": "perf/train_tokens_per_s",
    "total_tokens_per_s": "perf/train_total_tokens_per_s",
    "step_s": "timing_s/train_update",
    "rollout_prepare_s": "timing_s/rollout_prepare",
    "rollout_generate_s": "timing_s/rollout_generate",
    "rollout_convert_s": "timing_s/rollout_convert",
}

OWN = "oreal/"
_EVAL = "eval/"


def tracker_name(name: str) -> str:
    """The tracker name of one of our metric names (see the module docstring)."""
    if name in CONVENTIONAL:
        return CONVENTIONAL[name]
    if name.startswith("time/") and name.endswith("_s"):  # time/rollout_s, time/eval_s, time/step_s
        return "timing_s/" + name.removeprefix("time/").removesuffix("_s")
    if name.startswith(_EVAL) and name.count("/") == 2:  # eval/<bench>/<figure>
        _, bench, figure = name.split("/")
        return f"val/{bench}/{figure.replace('pass1', 'pass@1')}"
    return OWN + name


def tracker_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` under tracker names. Two of our names never land on one tracker name: the
    renames are distinct and no conventional name starts with ``oreal/``."""
    return {tracker_name(name): float(value) for name, value in metrics.items()}
