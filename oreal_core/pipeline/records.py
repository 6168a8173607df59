"""Stage records back out of the lake's tables (the lake writes them; stages re-read them).

Rows are returned in the stored order, which the rollout stage fixed as prompt-major with
sample_idx 0..K-1, so groups of K consecutive rows are one prompt's samples.
"""

from __future__ import annotations

import pyarrow as pa

from oreal_core.types import FinishReason, Sample, ScoredSample


def samples_from_table(table: pa.Table) -> list[Sample]:
    cols = table.select(["prompt_id", "sample_idx", "response", "prompt_token_ids", "token_ids", "logprobs",
                         "finish_reason", "policy_version"]).to_pydict()
    return [Sample(prompt_id=pid, sample_idx=idx, response=resp, prompt_token_ids=tuple(pt), token_ids=tuple(tt),
                   logprobs=tuple(lp), finish_reason=FinishReason(fr), policy_version=pv)
            for pid, idx, resp, pt, tt, lp, fr, pv in zip(*cols.values(), strict=True)]


def kept_samples(scored: pa.Table, samples: pa.Table) -> list[ScoredSample]:
    """The kept rows of a ``scored`` artefact joined with their tokens and rollout log-probs, in scored order."""
    tokens = {(pid, idx): (pt, tt, lp) for pid, idx, pt, tt, lp in zip(
        *samples.select(["prompt_id", "sample_idx", "prompt_token_ids", "token_ids", "logprobs"]).to_pydict().values(),
        strict=True)}
    cols = scored.select(["prompt_id", "sample_idx", "advantage", "kept", "is_positive"]).to_pydict()
    out = []
    for pid, idx, adv, kept, positive in zip(*cols.values(), strict=True):
        if kept:
            prompt_ids, token_ids, logprobs = tokens[(pid, idx)]
            out.append(ScoredSample(pid, idx, tuple(prompt_ids), tuple(token_ids), float(adv), bool(positive),
                                    tuple(logprobs)))
    return out
