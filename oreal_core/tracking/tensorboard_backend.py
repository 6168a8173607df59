"""TensorBoard: event files under ``<tracking dir>/tensorboard/<run_id>/``.

A resume opens a new event file in the same folder (TensorBoard merges a folder's files into
one run); what the earlier files hold is read back first, so no step is written twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from oreal_core.tracking.backend import PARAMS_KEY, Backend, TrackerRun

TEXT_SUFFIX = "/text_summary"  # SummaryWriter.add_text stores tag "x" as "x/text_summary"
FLUSH_S = 5  # live curves: TensorBoard's default of 120 s would show a step minutes late


class TensorBoardBackend(Backend):
    name = "tensorboard"

    def __init__(self, run: TrackerRun) -> None:
        super().__init__(run)
        self.folder = run.folder / "tensorboard" / run.run_id
        self.writer: SummaryWriter | None = None

    def open(self) -> dict[str, int]:
        logged = last_steps(self.folder)
        _after_the_newest_file(self.folder)
        self.writer = SummaryWriter(str(self.folder), flush_secs=FLUSH_S)
        return logged

    def log_params(self, params: dict[str, str]) -> None:
        # The HPARAMS tab (its summaries written into this run's own file: SummaryWriter.add_hparams
        # would open a sub-run per call) and the config as text, which PARAMS_KEY is read back from.
        for summary in hparams(params, {}):
            self.writer.file_writer.add_summary(summary)
        table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text(PARAMS_KEY, f"| setting | value |\n|---|---|\n{table}", 0)

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_text(self, step: int, key: str, markdown: str) -> None:
        self.writer.add_text(key, markdown, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _after_the_newest_file(folder: Path) -> None:
    """Wait until the clock is past the newest event file's second. TensorBoard reads a folder's
    files in name order, and a name is events.out.tfevents.<unix second>.<host>.<pid>...: a
    resume opened within the killed writer's second could sort first, and its steps would then
    come before the earlier ones, which TensorBoard takes for a restart and purges."""
    seconds = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)


def last_steps(folder: Path) -> dict[str, int]:
    """The last step of each tag in a run folder's event files (text tags by the name given)."""
    last: dict[str, int] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():  # stops at a truncated last record
            for value in event.summary.value:
                tag = value.tag.removesuffix(TEXT_SUFFIX)
                last[tag] = max(last.get(tag, -1), event.step)
    return last
