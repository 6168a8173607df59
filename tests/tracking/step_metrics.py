"""A real step's metrics (the dict ``rl_iteration`` returns) and an evaluation's scores:
PLACEHOLDER until captured from a tiny-cpu run."""

from __future__ import annotations

STEP_METRICS: dict[str, float] = {
    "rollout_prepare_s": 0.01, "rollout_generate_s": 0.8, "rollout_convert_s": 0.02, "rollout_tok_s": 1500.0,
    "time/rollout_s": 0.9, "time/verify_s": 0.3, "time/score_s": 0.2, "time/train_s": 1.1,
    "loss": 0.5, "loss_pos": 0.3, "loss_neg": 0.1, "loss_kl": 0.01, "kl": 0.001, "entropy": 0.08,
    "actor_grad_norm": 1.2, "actor_lr": 1e-4, "mean_reward": 0.2, "accuracy": 0.6,
    "response_tokens_mean": 30.0, "response_tokens_max": 48.0, "truncated_frac": 0.0,
    "tokens_per_s": 900.0, "total_tokens_per_s": 1800.0, "step_s": 0.5,
    "rm/bce": 0.69, "rm/within_pair_accuracy": 0.5, "health/judge_error_rate": 0.0,
}
EVAL_SCORES: dict[str, float] = {
    "time/eval_s": 1.5, "eval/synthetic/pass1": 0.375, "eval/synthetic/pass1_low": 0.13,
    "eval/synthetic/pass1_high": 0.69, "eval/synthetic/problems": 8.0, "eval/synthetic/problems_per_s": 5.3,
}
