"""The prepare flow: pass rates of a prompt set under the start policy, for balancing.

Run it once per prompt set (and again when the start policy changes); train on its output
with ``data.prompts=<out>`` and ``data.balance_by_pass_rate=true`` (see
oreal_core/pipeline/prepare.py for why the file holds rates rather than repeated rows).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from oreal_core.config import load_config
from oreal_core.pipeline.prepare import PrepareReport, prepare


@flow(name="oreal-prepare")
def prepare_prompts(out: str, config: str = "tiny-cpu", overrides: list[str] | None = None,
                    samples: int | None = None, limit: int | None = None, overwrite: bool = False) -> dict:
    """Estimate each prompt's pass rate (``samples`` per prompt, default rollout.samples_per_prompt)."""
    report = prepare(load_config(config, overrides or ()), out, samples=samples, limit=limit, overwrite=overwrite)
    table = render_report(report)
    get_run_logger().info("\n%s", table)
    create_markdown_artifact(markdown=f"# Prompt pass rates: `{report.out}`\n\n{table}\n",
                             description=f"{report.prompts} prompts x {report.samples_per_prompt} samples")
    return report.as_dict()


def render_report(report: PrepareReport) -> str:
    lines = [f"{report.prompts} prompts x {report.samples_per_prompt} samples in {report.seconds:.0f} s, "
             f"mean pass rate {report.mean_pass_rate:.3f}, outcomes {report.outcomes}",
             "", "| pass rate | prompts | repeat |", "|---|---|---|"]
    lines += [f"| {band} | {count} | x{repeat} |" for band, count, repeat in report.bands]
    lines += ["", f"balanced pool: {report.balanced_prompts} prompts ({report.dropped_prompts} dropped); "
              f"written to {report.out}"]
    return "\n".join(lines)
