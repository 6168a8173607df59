"""Reading prompt rows from JSONL, Parquet and local HF-datasets directories.

Two row formats are accepted, told apart by their fields:

* OREAL prompts (``internlm/OREAL-RL-Prompts``): ``question``, ``gold_answer``, optional
  ``pass_rate`` in [0, 1];
* benchmarks (../shared/data): ``problem`` or ``question``, and ``answer``. A GSM8K answer
  is a worked solution ending in ``#### N``: N is the gold answer.

A malformed row is a :class:`PromptDataError` naming the file and the line (1-based; the
row number for Parquet and HF datasets); every row is checked, and the error lists the
first few bad rows and counts the rest. Nothing is dropped silently: blank JSONL lines
are skipped and counted in the :class:`LoadReport`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GSM8K_MARK = "####"
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
LISTED_ERRORS = 5  # bad rows named in one error; the rest are counted


class PromptDataError(ValueError):
    """A prompt file or row that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class _Unreadable:
    """A JSONL line that is not a row (bad encoding or JSON): reported with the other bad rows."""

    why: str


class ErrorList:
    """Collects per-row errors and raises them as one line: the first LISTED_ERRORS, then a count."""

    def __init__(self, what: str) -> None:
        self.what = what  # e.g. "bad rows in p.jsonl"
        self.shown: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.shown) < LISTED_ERRORS:
            self.shown.append(message)

    def raise_any(self, suffix: str = "") -> None:
        if not self.count:
            return
        more = f"; ... {self.count - len(self.shown)} more" if self.count > len(self.shown) else ""
        total = f" ({self.count} {self.what})" if self.count > 1 else ""
        raise PromptDataError(f"{'; '.join(self.shown)}{more}{total}{suffix}")


@dataclass(frozen=True)
class PromptRecord:
    """One problem as read from a file, before the chat template is applied."""

    question: str
    gold_answer: str
    pass_rate: float | None
    source: str  # "path:line"
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadReport:
    """What a load read, kept and dropped (by reason), for the run's provenance."""

    path: str
    rows: int
    kept: int
    dropped: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "kept": self.kept, "dropped": dict(self.dropped)}


def read_prompt_records(path: str | Path) -> tuple[list[PromptRecord], LoadReport]:
    """All rows of a JSONL/Parquet file or HF-datasets directory, validated."""
    path = Path(path)
    if not path.exists():
        raise PromptDataError(f"{path}: no such file or directory")
    records: list[PromptRecord] = []
    errors = ErrorList(f"bad rows in {path}")
    blank = 0
    for line, row in _rows(path):
        if row is None:
            blank += 1
        elif isinstance(row, _Unreadable):
            errors.add(f"{path}:{line}: {row.why}")
        else:
            try:
                records.append(record_from_row(row, f"{path}:{line}"))
            except PromptDataError as exc:
                errors.add(str(exc))
    errors.raise_any()
    if not records:
        raise PromptDataError(f"{path}: no prompt rows")
    dropped = (("blank_lines", blank),) if blank else ()
    return records, LoadReport(str(path), len(records) + blank, len(records), dropped)


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs; a row is a parsed value, None for a blank line, or :class:`_Unreadable`."""
    if path.is_dir():
        yield from _dataset_rows(path)
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    elif path.suffix in (".jsonl", ".json"):
        yield from _jsonl_rows(path)
    else:
        raise PromptDataError(f"{path}: unknown prompt file type {path.suffix!r}; expected .jsonl, .parquet "
                              "or an HF-datasets directory (save_to_disk)")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:  # decoded line by line, so a bad byte is reported with its line
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, _Unreadable(f"not UTF-8 text (byte {exc.start + 1} of the line)")
                continue
            if not line.strip():
                yield line_no, None
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, _Unreadable(f"not valid JSON ({exc.msg})")
            except RecursionError:  # json's decoder recurses once per level of [ or {
                yield line_no, _Unreadable("JSON nested too deeply")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise PromptDataError(f"{path}: not a readable Parquet file ({exc})") from None
    yield from enumerate(table.to_pylist(), start=1)


def _dataset_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    import datasets

    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise PromptDataError(f"{path}: an HF DatasetDict; point data.prompts at one split: {splits}")
    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise PromptDataError(f"{path}: not an HF-datasets directory saved with save_to_disk ({exc})") from None
    yield from enumerate(dataset, start=1)


def record_from_row(row: Any, where: str) -> PromptRecord:
    """Validate one row of either format; ``where`` ("path:line") prefixes every error."""
    if not isinstance(row, dict):
        raise PromptDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    question = _text_field(row, ("question", "problem"), where)
    if "gold_answer" in row:
        answer = _text_field(row, ("gold_answer",), where)
    else:
        answer = gsm8k_gold(_text_field(row, ("answer",), where), where)
    pass_rate = row.get("pass_rate")
    if pass_rate is not None:
        if isinstance(pass_rate, bool) or not isinstance(pass_rate, int | float) or not (
                math.isfinite(pass_rate) and 0.0 <= pass_rate <= 1.0):
            raise PromptDataError(f"{where}: pass_rate={pass_rate!r} must be a number in [0, 1]")
        pass_rate = float(pass_rate)
    extra = tuple((k, str(v)) for k, v in sorted(row.items())
                  if k not in ("question", "problem", "gold_answer", "answer", "pass_rate") and v is not None)
    for key, value in extra:  # the prompt's metadata: eval groups by it and prints it
        _check_unicode(key, key, where)
        _check_unicode(value, key, where)
    return PromptRecord(question, answer, pass_rate, where, extra)


def _text_field(row: dict[str, Any], names: tuple[str, ...], where: str) -> str:
    for name in names:
        if name in row:
            value = row[name]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)  # numeric gold answers are common in JSONL
            if not isinstance(value, str):
                raise PromptDataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise PromptDataError(f"{where}: field {name!r} is empty")
            _check_unicode(value, name, where)
            return value
    raise PromptDataError(f"{where}: missing field {' or '.join(repr(n) for n in names)} (has {sorted(row)})")


def _check_unicode(value: str, name: str, where: str) -> None:
    """JSON's \\ud800 escapes decode to lone surrogates, which no UTF-8 encoder accepts: the
    tokenizer or the Parquet writer would fail on the row mid-run."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptDataError(f"{where}: field {name!r} is not valid Unicode (lone surrogate "
                              f"{value[exc.start]!r} at character {exc.start + 1})") from None


def gsm8k_gold(answer: str, where: str) -> str:
    """The N of a GSM8K ``... #### N`` solution (thousands separators removed); else the answer."""
    if GSM8K_MARK not in answer:
        return answer.strip()
    gold = answer.rsplit(GSM8K_MARK, 1)[1].strip()
    if not gold:
        raise PromptDataError(f"{where}: GSM8K answer has nothing after {GSM8K_MARK!r}")
    return gold.replace(",", "") if _THOUSANDS.match(gold) else gold
