"""Every SQL query the reports run, in one place, against the views of views.connect.

Each takes the run id as its only parameter (``$run_id``) and returns one row per step,
ordered by step, except TOKEN_RM_EXAMPLES, EVAL_ACCURACY_BY_CHECKPOINT (one row per step and
bench) and EVAL_FLIPPED_PROBLEMS (also takes ``$step_a`` and ``$step_b``). They are plain SQL: paste them into
``oreal query`` (with the run id filled in) to see the numbers behind a plot.
"""

from __future__ import annotations

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
