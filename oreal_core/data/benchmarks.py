"""The packaged math benchmarks (copied from ../shared/data; see benchmarks/README.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from oreal_core.data.records import PromptDataError, PromptRecord, read_prompt_records

BENCHMARK_DIR = Path(__file__).resolve().parent / "benchmarks"
# The competition sets end each problem with this line; strip it when the run's own system
# prompt or template already asks for a boxed answer (keep it otherwise).
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def benchmark_names() -> list[str]:
    return sorted(p.stem for p in BENCHMARK_DIR.glob("*.jsonl"))


def load_benchmark(name: str, *, strip_instruction: bool = False, limit: int | None = None) -> list[PromptRecord]:
    """Rows of a packaged benchmark (``math500``, ``gsm8k_test``, ...), in file order."""
    path = BENCHMARK_DIR / f"{name}.jsonl"
    if not path.is_file():
        raise PromptDataError(f"benchmark {name!r}: not packaged; known: {benchmark_names()}")
    records, _ = read_prompt_records(path)
    if strip_instruction:
        records = [replace(r, question=r.question.replace(BOXED_INSTRUCTION, "").rstrip()) for r in records]
    return records[:limit] if limit is not None else records
