"""Measuring the token-level RM on one step's kept samples (docs/token-rm.md).

Shapes: scores, weights (B, T) as in token_rm.py (the RM head at the positions predicting
each response token, and the token weights w+ / w- the loss used); mask (B, T) real
response tokens; is_positive (B,) bool; group (B,) long, the prompt each sample answers.

The RM's BCE alone says little on a balanced 1+1 batch: 0.693 is both "untrained" and
"right on half, confidently wrong on the other half". These metrics separate the cases:
does the sequence logit rank a prompt's correct sample above its wrong one (within-pair
accuracy), does it rank correct above wrong across prompts (AUC), and are the token weights
the loss sees informative at all (their spread, and how many are exactly 0).

The localisation metrics ask the token-level question on responses whose first wrong
token is known (the synthetic task, oreal_core/data/first_error.py): does the RM's prefix
value q_t fall at the token where the response goes wrong?

Every function returns plain floats; a metric without data (no pair, one class only) is
left out rather than reported as NaN, so a step without positives does not trip the
``nonfinite`` alarm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oreal_core.algo.token_rm import prefix_probability

ZERO_WEIGHT_EPS = 1e-6  # a weight at or below this counts as 0: the token is left out of the loss
LOC_TOP_K = 3  # tokens in the "most blamed" region: a synthetic-task number is a sign and 1-2 digits


def padded(rows: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample lists (e.g. the lake's token_rm_scores) as (B, T) float64 values and mask."""
    width = max((len(r) for r in rows), default=0)
    values = torch.zeros(len(rows), width, dtype=torch.float64)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        values[i, :len(row)] = torch.tensor(row, dtype=torch.float64)
        mask[i, :len(row)] = True
    return values, mask


def sequence_logits(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean token score over the response: the logit the RM's BCE is taken on
    (token_rm.sequence_loss), computed in float64 so ties are real ties."""
    maskf = mask.to(torch.float64)
    return (scores.double() * maskf).sum(dim=1) / maskf.sum(dim=1).clamp(min=1.0)


def auc(values: torch.Tensor, labels: torch.Tensor) -> float | None:
    """ROC AUC of ``values`` (N,) for ``labels`` (N,) bool: P(a positive's value > a negative's),
    ties counted 1/2 (Mann-Whitney U from mid-ranks). None without both classes."""
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return None
    _, inverse, counts = torch.unique(values.double(), return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mid_rank = (ends - (counts.double() - 1.0) / 2.0)[inverse]  # 1-based; tied values share their mean rank
    u = float(mid_rank[labels].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def within_pair_accuracy(logits: torch.Tensor, is_positive: torch.Tensor, group: torch.Tensor) -> float | None:
    """Share of (positive, negative) pairs of the same prompt whose positive has the higher
    sequence logit, ties counted 1/2 (a zero-initialised RM scores 0.5, chance, not 0).
    OREAL's 1+1 selection gives one pair per prompt; with ``selection: all`` every positive
    is paired with every negative of its prompt. None when no prompt has both."""
    pos = is_positive.bool()
    pairs = (group[:, None] == group[None, :]) & pos[:, None] & ~pos[None, :]  # (B, B): row pos, column neg
    if not bool(pairs.any()):
        return None
    diff = logits.double()[:, None] - logits.double()[None, :]
    wins = (diff > 0).double() + 0.5 * (diff == 0).double()
    return float(wins[pairs].mean())


def _mean_std(values: torch.Tensor) -> tuple[float, float] | None:
    """Mean and population standard deviation; None when empty."""
    if not values.numel():
        return None
    values = values.double()
    return float(values.mean()), float(values.std(unbiased=False))


def weight_metrics(weights: torch.Tensor, mask: torch.Tensor, is_positive: torch.Tensor) -> dict[str, float]:
    """Mean and spread of w+ over positive tokens and of w- over negative tokens, and the
    share of all response tokens whose weight is 0 (<= ZERO_WEIGHT_EPS): those tokens get no
    gradient from the policy loss, whatever their advantage."""
    mask = mask.bool()
    pos_tokens = mask & is_positive.bool()[:, None]
    neg_tokens = mask & ~is_positive.bool()[:, None]
    out: dict[str, float] = {}
    for name, where in (("pos", pos_tokens), ("neg", neg_tokens)):
        stats = _mean_std(weights[where])
        if stats is not None:
            out[f"rm/w_{name}_mean"], out[f"rm/w_{name}_std"] = stats
    if bool(mask.any()):
        out["rm/zero_weight_frac"] = float((weights[mask] <= ZERO_WEIGHT_EPS).double().mean())
    return out


def rm_health(scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor, is_positive: torch.Tensor,
              group: torch.Tensor) -> dict[str, float]:
    """Every rm/ metric of a step's kept samples (module docstring); scores and weights as
    the step used them, i.e. the RM *before* the step's update."""
    mask = mask.bool()
    logits = sequence_logits(scores, mask)
    labels = is_positive.bool()
    out = {"rm/bce": float(F.binary_cross_entropy_with_logits(logits, labels.double()))}
    pair_acc = within_pair_accuracy(logits, labels, group)
    if pair_acc is not None:
        out["rm/within_pair_accuracy"] = pair_acc
    seq_auc = auc(logits, labels)
    if seq_auc is not None:
        out["rm/auc"] = seq_auc
    out.update(weight_metrics(weights, mask, labels))
    return out


# ---------------------------------------------------------------------- localisation


def prefix_drops(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) d_t = q_{t-1} - q_t: how much appending response token t lowers the RM's value
    of the prefix, q_t = sigmoid(mean(s_1..s_t)) (token_rm.prefix_probability) and q_0 = 0.5
    (the empty prefix: no evidence either way, the zero-initialised RM's value everywhere).
    Positive when the token makes the RM think the answer less likely to be right. 0 on padding.

    The cumulative mean damps later tokens: one score s_t moves c_t by (s_t - c_{t-1}) / t,
    so an error at token 40 moves q less than the same error at token 4.
    """
    q = prefix_probability(scores.double(), mask.bool())
    before = torch.cat([torch.full_like(q[:, :1], 0.5), q[:, :-1]], dim=1)
    return torch.where(mask.bool(), before - q, torch.zeros_like(q))


def localisation(scores: torch.Tensor, mask: torch.Tensor, first_wrong: torch.Tensor,
                 top_k: int = LOC_TOP_K) -> dict[str, float]:
    """How well the RM points at the first wrong token of wrong responses.

    ``first_wrong`` (B,) long: index of each response's first wrong token (every row must
    have one; rows without are left out by the caller).

    * rm/loc_auroc: AUROC of the drop d_t (prefix_drops) at the first wrong tokens (one per
      response) against the drops at every other token of the same responses, pooled over
      the responses, ties 1/2. 0.5: the drop says nothing about where the error is.
    * rm/loc_hit_frac: share of responses whose first wrong token is among their ``top_k``
      tokens of lowest q_t, the tokens the RM blames most and, for a negative sample, the
      ones with the largest weight w- (w- is non-increasing in q under both weightings).
      Ties count against a hit: every token with q <= the wrong token's q, other than
      itself, takes a place in the region, so a constant RM hits nothing.
    * rm/loc_responses: responses measured.
    """
    mask = mask.bool()
    rows = torch.arange(scores.shape[0])
    if not scores.shape[0]:
        return {"rm/loc_responses": 0.0}
    if not bool(mask[rows, first_wrong].all()):
        raise ValueError("first_wrong: every index must point at a response token of its row")
    drops = prefix_drops(scores, mask)
    is_wrong = torch.zeros_like(mask)
    is_wrong[rows, first_wrong] = True
    out = {"rm/loc_responses": float(scores.shape[0])}
    loc_auc = auc(drops[mask], is_wrong[mask])
    if loc_auc is not None:
        out["rm/loc_auroc"] = loc_auc
    q = prefix_probability(scores.double(), mask)
    q_wrong = q[rows, first_wrong][:, None]
    rivals = ((q <= q_wrong) & mask & ~is_wrong).sum(dim=1)  # tokens blamed at least as much
    out["rm/loc_hit_frac"] = float((rivals < top_k).double().mean())
    return out
