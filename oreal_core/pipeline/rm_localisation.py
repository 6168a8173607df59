"""rm/loc_* metrics of a synthetic-task step (docs/token-rm.md): does the token RM point at
the token where a wrong response first goes wrong?

Glue only: the step's kept negatives, their text and the token-RM records the step trained
with in; the first wrong token comes from oreal_core.data.first_error, the metric from
oreal_core.algo.rm_health. Only the synthetic task has a known first wrong token, so the
train stage calls this for ``data.prompts: synthetic`` runs only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import torch

from oreal_core.algo.rm_health import localisation, padded
from oreal_core.data.first_error import first_wrong_token
from oreal_core.train.results import TokenRMRecord
from oreal_core.types import ScoredBatch


def token_offsets(tokenizer, token_ids: Sequence[int], text: str) -> list[int] | None:
    """Start offset in ``text`` of each token, by decoding growing prefixes (the way the
    rollout decoded the response: special tokens kept). Sampled tokens need not be the
    tokenizer's own encoding of the text, so re-encoding the text would not do. None when
    the decoded prefixes do not line up with ``text`` (a token split inside a character)."""
    prefixes = [tokenizer.decode(list(token_ids[:i]), skip_special_tokens=False) for i in range(len(token_ids) + 1)]
    if prefixes[-1] != text or any(not b.startswith(a) for a, b in zip(prefixes, prefixes[1:], strict=False)):
        return None
    return [len(p) for p in prefixes[:-1]]


def localisation_metrics(batch: ScoredBatch, records: Sequence[TokenRMRecord], samples: pa.Table,
                         questions: dict[str, str], tokenizer) -> dict[str, float]:
    """rm/loc_auroc, rm/loc_hit_frac and rm/loc_responses over the step's kept negatives whose
    first wrong token is found; ``records`` as the trainer returned them (the RM before the
    step's update), ``questions`` by prompt id. Nothing without token-RM records."""
    if not records:
        return {}
    responses = dict(zip(zip(samples["prompt_id"].to_pylist(), samples["sample_idx"].to_pylist(), strict=True),
                         samples["response"].to_pylist(), strict=True))
    by_key = {(r.prompt_id, r.sample_idx): r for r in records}
    rows, first = [], []
    for sample in batch.samples:
        key = (sample.prompt_id, sample.sample_idx)
        if sample.is_positive or key not in by_key or sample.prompt_id not in questions:
            continue
        offsets = token_offsets(tokenizer, sample.token_ids, responses[key])
        index = first_wrong_token(questions[sample.prompt_id], responses[key], offsets) if offsets else None
        if index is not None:
            rows.append(by_key[key].scores)
            first.append(index)
    scores, mask = padded(rows)
    return localisation(scores, mask, torch.tensor(first, dtype=torch.long))
