"""Every SQL query the reports run, in one place, against the views of views.connect.

Each takes the run id as its only parameter (``$run_id``) and returns one row per step,
ordered by step, except TOKEN_RM_EXAMPLES, EVAL_ACCURACY_BY_CHECKPOINT (one row per step and
bench) and EVAL_FLIPPED_PROBLEMS (also takes ``$step_a`` and ``$step_b``). They are plain SQL: paste them into
``oreal query`` (with the run id filled in) to see the numbers behind a plot.

SIGNATURES are the samples behind each reward-hacking / health metric, and
signature_samples_sql the ready-to-run query ``oreal samples`` prints (docs/health.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from oreal_core.store.layout import check_run_id
from oreal_core.verify.signatures import REPEAT_NGRAM, REPETITIVE_RATIO

ACCURACY_BY_STEP = """
SELECT step,
       count(*)                                   AS samples,
       avg(correct::INT)                          AS accuracy,
       avg(reward)                                AS mean_reward,
       avg((outcome = 'truncated')::INT)          AS truncated_frac,
       avg((outcome = 'unparseable')::INT)        AS unparseable_frac,
       avg((outcome = 'judge_error')::INT)        AS judge_error_frac
FROM verdicts WHERE run_id = $run_id
GROUP BY step ORDER BY step
"""

LENGTH_BY_STEP = """
SELECT s.step,
       avg(s.num_tokens)                             AS mean_tokens,
       median(s.num_tokens)                          AS median_tokens,
       quantile_cont(s.num_tokens, 0.9)              AS p90_tokens,
       avg(s.num_tokens) FILTER (WHERE v.correct)     AS mean_tokens_correct,
       avg(s.num_tokens) FILTER (WHERE NOT v.correct) AS mean_tokens_incorrect,
       avg((s.finish_reason = 'length')::INT)        AS hit_length_frac
FROM samples s
LEFT JOIN verdicts v USING (run_id, step, prompt_id, sample_idx)
WHERE s.run_id = $run_id
GROUP BY s.step ORDER BY s.step
"""

SELECTION_BY_STEP = """
SELECT step,
       count(*) FILTER (WHERE kept AND is_positive)     AS kept_positive,
       count(*) FILTER (WHERE kept AND NOT is_positive) AS kept_negative,
       count(*) FILTER (WHERE NOT kept)                 AS filtered,
       avg(abs(advantage)) FILTER (WHERE kept)          AS mean_abs_advantage
FROM scored WHERE run_id = $run_id
GROUP BY step ORDER BY step
"""

# The judge is consulted when the rule check cannot decide; rule_outcome is then kept
# next to the final outcome, so disagreement is where the two differ (DESIGN.md §7).
JUDGE_DISAGREEMENT_BY_STEP = """
SELECT step,
       count(*) FILTER (WHERE rule_outcome IS NOT NULL)                                  AS judged,
       count(*) FILTER (WHERE rule_outcome IS NOT NULL AND rule_outcome <> outcome)      AS disagreed,
       count(*) FILTER (WHERE rule_outcome = 'correct' AND outcome <> 'correct')         AS rule_yes_judge_no,
       count(*) FILTER (WHERE rule_outcome <> 'correct' AND outcome = 'correct')         AS rule_no_judge_yes
FROM verdicts WHERE run_id = $run_id
GROUP BY step ORDER BY step
"""

# Two positive and two negative kept samples of the latest step that has token weights.
TOKEN_RM_EXAMPLES = """
WITH weighted AS (
    SELECT * FROM scored
    WHERE run_id = $run_id AND kept AND len(token_weights) > 0
), latest AS (
    SELECT * FROM weighted WHERE step = (SELECT max(step) FROM weighted)
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY is_positive ORDER BY prompt_id, sample_idx) AS rank
    FROM latest
)
SELECT r.step, r.prompt_id, r.sample_idx, r.is_positive, r.advantage, r.token_weights,
       s.token_ids, s.response
FROM ranked r
LEFT JOIN samples s USING (run_id, step, prompt_id, sample_idx)
WHERE r.rank <= 2
ORDER BY r.is_positive DESC, r.prompt_id, r.sample_idx
"""

METRICS_BY_STEP = """
SELECT step, name, value FROM metrics WHERE run_id = $run_id ORDER BY name, step
"""

STEPS_BY_TABLE = """
SELECT 'samples' AS table_name, count(DISTINCT step) AS steps, count(*) AS rows FROM samples WHERE run_id = $run_id
UNION ALL SELECT 'verdicts', count(DISTINCT step), count(*) FROM verdicts WHERE run_id = $run_id
UNION ALL SELECT 'scored', count(DISTINCT step), count(*) FROM scored WHERE run_id = $run_id
UNION ALL SELECT 'metrics', count(DISTINCT step), count(*) FROM metrics WHERE run_id = $run_id
UNION ALL SELECT 'eval', count(DISTINCT step), count(*) FROM eval WHERE run_id = $run_id
"""

# pass@1 of each benchmark at each evaluated checkpoint: per problem the fraction of correct
# samples, averaged over problems (the same estimator as oreal_core.eval).
EVAL_ACCURACY_BY_CHECKPOINT = """
WITH per_problem AS (
    SELECT step, checkpoint, bench, problem_id,
           avg((outcome = 'correct')::INT)   AS pass1,
           avg(num_tokens)                   AS tokens,
           avg((outcome = 'truncated')::INT) AS truncated
    FROM eval WHERE run_id = $run_id
    GROUP BY step, checkpoint, bench, problem_id
)
SELECT step, checkpoint, bench,
       count(*)       AS problems,
       avg(pass1)     AS pass1,
       avg(tokens)    AS mean_tokens,
       avg(truncated) AS truncated_frac
FROM per_problem
GROUP BY step, checkpoint, bench ORDER BY bench, step, checkpoint
"""

# Problems whose status changed between two evaluated steps ($run_id, $step_a, $step_b).
# A problem counts as solved when at least half its samples are correct (with greedy
# pass@1: when its one sample is). answer_a/answer_b are the first sample's extracted answers.
EVAL_FLIPPED_PROBLEMS = """
WITH per_problem AS (
    SELECT step, bench, problem_id,
           avg((outcome = 'correct')::INT)                         AS pass1,
           any_value(extracted_answer) FILTER (WHERE sample_idx = 0) AS answer
    FROM eval WHERE run_id = $run_id AND step IN ($step_a, $step_b)
    GROUP BY step, bench, problem_id
)
SELECT a.bench, a.problem_id,
       CASE WHEN b.pass1 >= 0.5 THEN 'gained' ELSE 'lost' END AS flip,
       a.pass1 AS pass1_a, b.pass1 AS pass1_b, a.answer AS answer_a, b.answer AS answer_b
FROM per_problem a JOIN per_problem b USING (bench, problem_id)
WHERE a.step = $step_a AND b.step = $step_b AND (a.pass1 >= 0.5) <> (b.pass1 >= 0.5)
ORDER BY a.bench, flip, a.problem_id
"""

HEALTH_METRIC_PREFIXES = ("health/", "rm/")  # the health page's metrics; the rest are training metrics


@dataclass(frozen=True)
class Signature:
    """The samples that make up one health metric's numerator, as a SQL predicate.

    ``where`` restates oreal_core/pipeline/health.py's definition over ``samples s LEFT JOIN
    verdicts v``: through the UDFs views.connect registers where health.py decides in Python,
    as plain SQL where the definition is a column test (tests/store/test_health_report.py
    checks each against the metric health.py computes on the same tables).
    """

    metric: str  # the health/ metric these samples are counted in
    what: str  # one line for the health page and --help
    where: str
    shows: str  # the columns that show why a sample matched (few: the table view elides wide rows)


SIGNATURES: dict[str, Signature] = {
    "multi_boxed": Signature(
        "health/multi_boxed_frac", "two or more different \\boxed answers (after normalisation)",
        "oreal_distinct_boxed(s.response) > 1", "v.outcome, oreal_distinct_boxed(s.response) AS distinct_boxed, v.extracted_answer"),
    "boxed_without_work": Signature(
        "health/boxed_without_work_frac", "a \\boxed answer with (almost) no working before it",
        "oreal_boxed_without_work(s.response)", "v.outcome, v.extracted_answer"),
    "repetitive": Signature(
        "health/repetitive_frac", f"more than {REPETITIVE_RATIO:g} of the token {REPEAT_NGRAM}-grams are repeats",
        f"oreal_repeated_ngram_ratio(s.token_ids) > {REPETITIVE_RATIO!r}",
        "round(oreal_repeated_ngram_ratio(s.token_ids), 3) AS repeated_ngram_ratio, s.num_tokens, s.finish_reason"),
    "correct_at_length_limit": Signature(
        "health/correct_at_length_limit_frac", "correct, yet it used the whole generation budget",
        "v.correct AND (s.finish_reason = 'length' OR s.num_tokens >= s.max_new_tokens)",
        "v.outcome, s.num_tokens, s.max_new_tokens, s.finish_reason"),
    "truncated": Signature(
        "health/truncated_frac", "hit rollout.max_new_tokens (finish reason length)",
        "s.finish_reason = 'length'", "v.outcome, s.num_tokens, s.max_new_tokens"),
    # on_judge_error=rule keeps the rule's verdict (source rule) with a "judge error:" reason
    "judge_errors": Signature(
        "health/judge_error_rate", "sent to the judge, no verdict came back (rule fallbacks included)",
        "v.outcome = 'judge_error' OR (v.source = 'rule' AND starts_with(v.reason, 'judge error:'))",
        "v.outcome, v.source, v.reason"),
    "rule_judge_disagreement": Signature(
        "health/rule_judge_disagree_rate", "the judge decided against a definite rule verdict",
        "v.source = 'judge' AND v.outcome IN ('correct', 'incorrect') "
        "AND v.rule_outcome IN ('correct', 'incorrect') AND v.outcome <> v.rule_outcome",
        "v.outcome, v.rule_outcome, v.extracted_answer, s.gold_answer"),
}


def signature_samples_sql(signature: str, run_id: str, step: int | None = None, limit: int = 20) -> str:
    """The query listing a run's samples that show ``signature`` (all steps, or one), oldest first.

    Values are written into the text (the run id is checked to hold no quote), so the result
    is a plain statement to paste into ``oreal query`` or any DuckDB session with the views."""
    if signature not in SIGNATURES:
        raise ValueError(f"unknown signature {signature!r}; known: {', '.join(SIGNATURES)}")
    sig = SIGNATURES[signature]
    at_step = "" if step is None else f" AND s.step = {int(step)}"
    return (f"SELECT s.step, s.prompt_id, s.sample_idx, {sig.shows}, s.response\nFROM samples s LEFT JOIN verdicts v USING (run_id, step, prompt_id, sample_idx)\n"
            f"WHERE s.run_id = '{check_run_id(run_id)}'{at_step} AND ({sig.where})\n"
            f"ORDER BY s.step, s.prompt_id, s.sample_idx LIMIT {int(limit)}")
