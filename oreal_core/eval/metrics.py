"""One benchmark's numbers from its per-sample records (pure: no engine, no lake).

pass@1 of a problem is its fraction of correct samples (the unbiased pass@1 for n samples);
pass@k uses the combinatorial estimator. Both are averaged over problems and get a
percentile-bootstrap interval over problems. Truncated samples count as incorrect, as in
training, and their rate is reported beside the accuracy so a length budget that is too
small is visible rather than folded into a low score.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from oreal_core.eval.estimators import Interval, mean_with_bootstrap, pass_at_k
from oreal_core.store.records import EvalRecord


@dataclass(frozen=True)
class GroupScore:
    """pass@1 of the problems whose metadata ``key`` has value ``value`` (e.g. level 3)."""

    key: str
    value: str
    problems: int
    pass1: float


@dataclass(frozen=True)
class BenchSummary:
    """One benchmark at one checkpoint."""

    bench: str
    checkpoint: str
    step: int
    problems: int
    samples_per_problem: int
    k: int
    pass1: Interval
    pass_k: Interval
    mean_tokens: float
    truncation_rate: float
    outcomes: tuple[tuple[str, int], ...]  # outcome -> samples
    breakdown: tuple[GroupScore, ...]
    sampled_problems: int  # sampled by this call; the rest were resumed from the lake
    sample_s: float  # generate + verify time of this call
    problems_per_s: float  # sampled_problems / sample_s (0 when everything was resumed)


def per_problem_counts(records: Sequence[EvalRecord]) -> dict[str, tuple[int, int]]:
    """problem id -> (samples, correct samples)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        counts[r.problem_id][0] += 1
        counts[r.problem_id][1] += r.outcome == "correct"
    return {pid: (n, c) for pid, (n, c) in counts.items()}


def summarise_bench(records: Sequence[EvalRecord], *, bench: str, checkpoint: str, step: int, k: int,
                    metadata: Mapping[str, tuple[tuple[str, str], ...]], breakdown_keys: Sequence[str],
                    sampled_problems: int = 0, sample_s: float = 0.0) -> BenchSummary:
    if not records:
        raise ValueError(f"bench {bench!r}: no records to summarise")
    counts = per_problem_counts(records)
    sizes = {n for n, _ in counts.values()}
    if len(sizes) != 1:
        raise ValueError(f"bench {bench!r}: problems have differing sample counts {sorted(sizes)}")
    n = sizes.pop()
    if not 1 <= k <= n:
        raise ValueError(f"bench {bench!r}: pass@{k} needs at least {k} samples per problem, have {n}")
    ids = sorted(counts)
    pass1 = [counts[p][1] / counts[p][0] for p in ids]
    passk = [pass_at_k(counts[p][0], counts[p][1], k) for p in ids]
    return BenchSummary(
        bench=bench, checkpoint=checkpoint, step=step, problems=len(ids), samples_per_problem=n, k=k,
        pass1=mean_with_bootstrap(pass1), pass_k=mean_with_bootstrap(passk),
        mean_tokens=sum(r.num_tokens for r in records) / len(records),
        truncation_rate=sum(r.outcome == "truncated" for r in records) / len(records),
        outcomes=tuple(sorted(Counter(r.outcome for r in records).items())),
        breakdown=_breakdown(dict(zip(ids, pass1, strict=True)), metadata, breakdown_keys),
        sampled_problems=sampled_problems, sample_s=sample_s,
        problems_per_s=sampled_problems / sample_s if sample_s > 0 else 0.0,
    )


def _breakdown(pass1: Mapping[str, float], metadata: Mapping[str, tuple[tuple[str, str], ...]],
               keys: Sequence[str]) -> tuple[GroupScore, ...]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pid, score in pass1.items():
        for key, value in metadata.get(pid, ()):
            if key in keys:
                groups[(key, value)].append(score)
    return tuple(GroupScore(key, value, len(scores), sum(scores) / len(scores))
                 for (key, value), scores in sorted(groups.items(), key=lambda kv: (kv[0][0], _natural(kv[0][1]))))


def _natural(value: str) -> tuple[int, float | str]:
    """Levels sort numerically ("2" < "10"), names alphabetically."""
    try:
        return 0, float(value)
    except ValueError:
        return 1, value
