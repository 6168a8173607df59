"""A local tracker in plain files DuckDB reads: ``<tracking dir>/jsonl/<run_id>/``.

* ``metrics.jsonl``: one line per value, ``{"run_id", "step", "name", "value", "time"}``
  (a non-finite value is null: JSON has no NaN);
* ``texts.jsonl``: ``{"run_id", "step", "key", "text"}`` (sample rollouts);
* ``params.jsonl``: ``{"run_id", "name", "value"}`` (the resolved config and its hash).

Query: ``SELECT step, value FROM read_json_auto('runs/tracking/jsonl/*/metrics.jsonl')
WHERE name = 'critic/accuracy/mean'``. Lines are appended and flushed per call, so the files
are live; a line cut by a kill is dropped when the run reopens, and steps already written are
read back then, so a resume writes none of them twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO

from oreal_core.tracking.backend import PARAMS_KEY, Backend, TrackerRun, finite_or_none

FILES = ("metrics", "texts", "params")


class JsonlBackend(Backend):
    name = "jsonl"

    def __init__(self, run: TrackerRun) -> None:
        super().__init__(run)
        self.folder = run.folder / "jsonl" / run.run_id
        self.files: dict[str, IO[str]] = {}

    def open(self) -> dict[str, int]:
        self.folder.mkdir(parents=True, exist_ok=True)
        logged: dict[str, int] = {}
        for kind in FILES:
            path = self.folder / f"{kind}.jsonl"
            for record in complete_lines(path):
                if kind == "params":
                    logged[PARAMS_KEY] = 0
                else:
                    name = record["name"] if kind == "metrics" else record["key"]
                    logged[name] = max(logged.get(name, -1), record["step"])
            self.files[kind] = path.open("a", encoding="utf-8")
        return logged

    def log_params(self, params: dict[str, str]) -> None:
        self._append("params", [{"run_id": self.run.run_id, "name": k, "value": v} for k, v in params.items()])

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        now = time.time()
        self._append("metrics", [{"run_id": self.run.run_id, "step": step, "name": name,
                                  "value": finite_or_none(value), "time": now} for name, value in values.items()])

    def log_text(self, step: int, key: str, markdown: str) -> None:
        self._append("texts", [{"run_id": self.run.run_id, "step": step, "key": key, "text": markdown}])

    def close(self) -> None:
        for file in self.files.values():
            file.close()
        self.files = {}

    def _append(self, kind: str, records: list[dict]) -> None:
        file = self.files[kind]
        file.write("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))  # one write per call
        file.flush()


def complete_lines(path: Path) -> list[dict]:
    """The records of a JSONL file; a last line without its newline (a write cut by a kill) is
    cut off the file, so the next append starts on a line of its own."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]
    if len(whole) != len(data):
        with path.open("r+b") as file:
            file.truncate(len(whole))
    return [json.loads(line) for line in whole.decode("utf-8").splitlines() if line.strip()]
