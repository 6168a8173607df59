"""``oreal report RUN_ID``: a folder of PNG plots and a markdown summary for one run.

All numbers come from the canned SQL in canned.py over the same DuckDB views that
``oreal query`` uses, so every figure can be reproduced by hand. A plot whose table has
no rows for this run (no judge configured, token RM disabled, ...) is skipped and the
summary says why instead of drawing an empty chart. The ``health/`` and ``rm/`` metrics, with
their alarm thresholds and the alarms the run raised, have a page of their own (health.md,
written by health_report.py); ``metrics.png`` shows the training metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from oreal_core.config import OrealConfig, StoreConfig
from oreal_core.store import canned, plots
from oreal_core.store.health_report import is_health_metric, write_health_page
from oreal_core.store.integrity import Skipped
from oreal_core.store.lake import Lake
from oreal_core.store.layout import check_run_id
from oreal_core.store.views import open_views


@dataclass(frozen=True)
class Figure:
    file: str
    caption: str
    skipped_because: str = ""


def write_report(cfg: OrealConfig | StoreConfig, run_id: str, out_dir: str | Path | None = None,
                 token_text: plots.TokenText | None = None) -> Path:
    """Write ``<out_dir>/summary.md`` and its PNGs; ``out_dir`` defaults to ``reports/<run_id>``."""
    lake = Lake.open(cfg.store if isinstance(cfg, OrealConfig) else cfg)
    manifest = lake.run(check_run_id(run_id))  # RunNotFound names the known runs
    out = Path(out_dir) if out_dir is not None else Path("reports") / run_id
    out.mkdir(parents=True, exist_ok=True)
    con, skipped = open_views(lake)
    try:
        results = {name: _fetch(con, sql, run_id) for name, sql in _QUERIES.items()}
    finally:
        con.close()
    figures = _draw(results, out, token_text)
    health = write_health_page(lake, run_id, results["metrics"], out)
    summary = _summary(manifest, results, figures, health, [s for s in skipped if s.run_id == run_id])
    (out / "summary.md").write_text(summary)
    return out


_QUERIES = {
    "accuracy": canned.ACCURACY_BY_STEP,
    "length": canned.LENGTH_BY_STEP,
    "selection": canned.SELECTION_BY_STEP,
    "judge": canned.JUDGE_DISAGREEMENT_BY_STEP,
    "token_rm": canned.TOKEN_RM_EXAMPLES,
    "metrics": canned.METRICS_BY_STEP,
    "tables": canned.STEPS_BY_TABLE,
    "eval": canned.EVAL_ACCURACY_BY_CHECKPOINT,
}


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, run_id: str) -> pa.Table:
    return con.execute(sql, {"run_id": run_id}).to_arrow_table()


def _draw(results: dict[str, pa.Table], out: Path, token_text: plots.TokenText | None) -> list[Figure]:
    def empty(name: str, why: str) -> str:
        return why if results[name].num_rows == 0 else ""

    figures = []
    why = empty("accuracy", "no verdicts for this run")
    if not why:
        plots.lines_by_step(results["accuracy"], {"accuracy": "accuracy", "mean_reward": "mean reward"},
                            "Accuracy and reward per step", "value", out / "accuracy_reward.png")
    figures.append(Figure("accuracy_reward.png", "Accuracy and mean reward of the rollouts per step", why))
    why = empty("length", "no samples for this run")
    if not why:
        plots.lines_by_step(results["length"], {"mean_tokens": "mean", "median_tokens": "median",
                                                "p90_tokens": "p90", "mean_tokens_correct": "mean (correct)",
                                                "mean_tokens_incorrect": "mean (incorrect)"},
                            "Response length per step", "tokens", out / "response_length.png")
    figures.append(Figure("response_length.png", "Response length per step (length drift)", why))
    why = empty("selection", "no scored samples for this run")
    if not why:
        plots.stacked_bars_by_step(results["selection"], {"kept_positive": "kept +", "kept_negative": "kept -",
                                                          "filtered": "filtered"},
                                   "Kept and filtered samples per step", out / "selection.png")
    figures.append(Figure("selection.png", "Kept (positive / negative) and filtered samples per step", why))
    judged = sum(v or 0 for v in results["judge"].column("judged").to_pylist())
    why = empty("judge", "no verdicts for this run") or ("" if judged else "the judge was never consulted")
    if not why:
        plots.stacked_bars_by_step(results["judge"], {"rule_yes_judge_no": "rule correct, judge not",
                                                      "rule_no_judge_yes": "rule not, judge correct"},
                                   "Rule-vs-judge disagreement per step", out / "judge_disagreement.png")
    figures.append(Figure("judge_disagreement.png", "Samples where the judge overrode the rule check", why))
    why = empty("token_rm", "no kept samples with token weights (token RM disabled or not yet run)")
    if not why:
        plots.token_weight_heatmap(results["token_rm"], out / "token_rm_heatmap.png", token_text)
    figures.append(Figure("token_rm_heatmap.png", "Token-RM weights of chosen kept samples (latest step)", why))
    training = _training_metrics(results["metrics"])
    why = empty("metrics", "no metrics for this run") or \
        ("" if training.num_rows else "no training metrics (the health/ and rm/ ones are on the health page)")
    if not why:
        plots.metrics_grid(training, out / "metrics.png")
    figures.append(Figure("metrics.png", "Training metrics per step", why))
    why = empty("eval", "no evaluation records for this run")
    if not why:
        plots.accuracy_by_checkpoint(results["eval"], out / "eval_accuracy.png")
    figures.append(Figure("eval_accuracy.png", "Evaluation pass@1 per checkpoint and benchmark", why))
    return figures


def _training_metrics(metrics: pa.Table) -> pa.Table:
    """The metrics that are not on the health page: 25-odd health/ panels would crowd the
    losses out of the grid's first twelve."""
    return metrics.filter(pc.invert(is_health_metric(metrics.column("name"))))


def _summary(manifest, results: dict[str, pa.Table], figures: list[Figure], health: str,
             skipped: list[Skipped]) -> str:
    lines = [f"# Run `{manifest.run_id}`", "",
             f"- config hash: `{manifest.config_hash}`", f"- code version: `{manifest.code_version}`",
             f"- started: {manifest.created_at}", "", *_excluded(skipped), *_environment(manifest.environment),
             "## Health", "", health, "", "## Artefacts", "",
             _markdown_table(results["tables"]), "", "## Per step", ""]
    per_step = _per_step(results)
    lines += [_markdown_table(per_step) if per_step.num_rows else "_no per-step data yet_", "", "## Plots", ""]
    for fig in figures:
        lines.append(f"- {fig.caption}: _skipped: {fig.skipped_because}_" if fig.skipped_because
                     else f"### {fig.caption}\n\n![{fig.caption}]({fig.file})\n")
    lines += ["", "## Try", "", "```bash",
              f"oreal query \"SELECT step, avg(correct::INT) AS acc FROM verdicts WHERE run_id = '{manifest.run_id}' GROUP BY step ORDER BY step\"",
              f"oreal query --format csv \"SELECT * FROM scored WHERE run_id = '{manifest.run_id}' AND kept\"",
              "```", ""]
    return "\n".join(lines)


def _excluded(skipped: list[Skipped]) -> list[str]:
    """A figure computed without a damaged artefact must say so where it is read."""
    if not skipped:
        return []
    lines = ["## Excluded artefacts", "", "These files do not match their manifests; every number below "
             "is computed without them:", ""]
    return [*lines, *(f"- step {s.step} `{s.table}`: {s.problem}" for s in skipped), ""]


def _environment(environment: dict | None) -> list[str]:
    """What the numbers depend on besides config and code (docs/reproducibility.md)."""
    if not environment:
        return ["_environment: not recorded (a run started before it was)_", ""]
    lines = ["## Environment at the start", ""]
    for section, values in environment.items():
        shown = ", ".join(f"{k} `{v}`" for k, v in values.items()) if isinstance(values, dict) else f"`{values}`"
        lines.append(f"- {section.replace('_', ' ')}: {shown}")
    return [*lines, ""]


def _per_step(results: dict[str, pa.Table]) -> pa.Table:
    """Accuracy, length and selection side by side (a step missing from a table shows blank)."""
    con = duckdb.connect()
    try:
        for name in ("accuracy", "length", "selection"):
            con.register(name, results[name])
        return con.execute("""
            SELECT step, a.samples, round(a.accuracy, 3) AS accuracy, round(a.mean_reward, 3) AS mean_reward,
                   round(l.mean_tokens, 1) AS mean_tokens, s.kept_positive, s.kept_negative, s.filtered
            FROM accuracy a FULL JOIN length l USING (step) FULL JOIN selection s USING (step)
            ORDER BY step""").to_arrow_table()
    finally:
        con.close()


def _markdown_table(table: pa.Table) -> str:
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "|" + "---|" * len(table.column_names)
    body = ["| " + " | ".join("" if v is None else str(v) for v in row.values()) + " |" for row in table.to_pylist()]
    return "\n".join([header, rule, *body])
