"""A few of a step's rollouts as a markdown table, for the trackers that show text.

Read from the lake on a tracker's thread, never the run's (a 7B step's samples table is
~100 MB of token ids), and once per step whichever backend asks first.
"""

from __future__ import annotations

import logging
import threading

from oreal_core.config.schema import StoreConfig
from oreal_core.store import Lake

log = logging.getLogger(__name__)

RESPONSE_CHARS = 400  # of each response: enough to see the working and the boxed answer


class SampleTable:
    """Callable: the markdown of step ``step``'s first ``count`` prompts (sample 0 of each)."""

    def __init__(self, store: StoreConfig, run_id: str, step: int, count: int) -> None:
        self.store, self.run_id, self.step, self.count = store, run_id, step, count
        self._lock = threading.Lock()
        self._text: str | None = None
        self._read = False

    def __call__(self) -> str | None:
        with self._lock:
            if not self._read:
                self._read = True
                try:
                    self._text = self._markdown()
                except Exception as exc:  # noqa: BLE001 - a missing table costs the text, not the tracker
                    log.warning("tracking: no sample table for step %d (%s)", self.step, exc)
            return self._text

    def _markdown(self) -> str:
        lake = Lake.open(self.store)
        samples = lake.read(self.run_id, self.step, "samples").select(
            ["prompt_id", "sample_idx", "prompt", "response", "finish_reason"]).to_pylist()
        verdicts = {(v["prompt_id"], v["sample_idx"]): v for v in
                    lake.read(self.run_id, self.step, "verdicts").select(
                        ["prompt_id", "sample_idx", "outcome", "reward"]).to_pylist()}
        rows = [s for s in samples if s["sample_idx"] == 0][:self.count]
        lines = ["| prompt | response | outcome | reward | finish |", "|---|---|---|---|---|"]
        for s in rows:
            verdict = verdicts.get((s["prompt_id"], s["sample_idx"]), {})
            lines.append(f"| {cell(s['prompt'])} | {cell(s['response'])} | {verdict.get('outcome', '')} | "
                         f"{verdict.get('reward', '')} | {s['finish_reason']} |")
        return "\n".join(lines)


def cell(text: str) -> str:
    """Text for one markdown table cell: one line, no column breaks, clipped."""
    text = text if len(text) <= RESPONSE_CHARS else text[:RESPONSE_CHARS] + "..."
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", "<br>")
