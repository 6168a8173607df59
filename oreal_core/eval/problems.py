"""What an evaluation runs on: benchmark names resolved to rendered prompts.

A benchmark is one of

* a packaged set (``math500``, ``aime24``, ``gsm8k`` = ``gsm8k_test``, ...; see
  ``oreal_core/data/benchmarks/README.md`` for provenance);
* ``synthetic``: the held-out split of the tiny task the CPU demo trains on;
* a path to a JSONL/Parquet file whose rows have ``problem``/``question`` and ``answer``
  (or ``gold_answer``) fields; it is recorded in the lake under the file's stem.

Prompts go through the policy's chat template with ``data.system_prompt``, exactly as
the RL prompts do, so eval measures the policy under the conditions it was trained in.
Problem ids are ``<bench>-<row index>``: stable for a given file, and what the lake's
``eval`` table and the "flipped problems" query join on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from oreal_core.config import OrealConfig
from oreal_core.data.benchmarks import benchmark_names, load_benchmark
from oreal_core.data.prompts import SYNTHETIC, problem_prompt, record_prompt
from oreal_core.data.records import PromptDataError, read_prompt_records
from oreal_core.data.tasks import synthetic_splits
from oreal_core.types import Prompt

# Names the issue and the papers use for packaged files named otherwise.
ALIASES = {"gsm8k": "gsm8k_test"}
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


class EvalInputError(ValueError):
    """A benchmark, row or checkpoint that cannot be evaluated; the message says which and why."""


@dataclass(frozen=True)
class EvalSet:
    """One benchmark's problems, rendered; ``name`` is what the lake records as ``bench``."""

    name: str
    prompts: tuple[Prompt, ...]
    source: str  # file or generator, for the summary's provenance


def known_benchmarks() -> list[str]:
    return sorted({*benchmark_names(), *ALIASES, SYNTHETIC})


def parse_bench_list(text: str) -> tuple[str, ...]:
    """``"math500, aime24"`` -> ("math500", "aime24"); empty entries and repeats are errors."""
    names = tuple(part.strip() for part in text.split(","))
    if not names or any(not n for n in names):
        raise EvalInputError(f"--bench {text!r}: expected comma-separated names, e.g. math500,aime24; "
                             f"known: {known_benchmarks()}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EvalInputError(f"--bench {text!r}: {repeated} listed more than once")
    return names


def load_eval_set(name: str, cfg: OrealConfig, tokenizer: PreTrainedTokenizerBase) -> EvalSet:
    """The first ``eval.limit`` problems of benchmark ``name``, through the chat template."""
    limit = cfg.eval.limit
    system = cfg.data.system_prompt
    if name == SYNTHETIC:
        _, heldout = synthetic_splits(cfg.data.synthetic)
        prompts = tuple(_synthetic_prompt(p, tokenizer, system) for p in heldout[:limit])
        return EvalSet(SYNTHETIC, prompts, f"synthetic held-out split ({len(heldout)} problems)")
    packaged = ALIASES.get(name, name)
    try:
        if packaged in benchmark_names():
            records = load_benchmark(packaged, strip_instruction=cfg.eval.strip_boxed_instruction, limit=limit)
            bench, source = name, f"packaged {packaged}"
        elif Path(name).suffix in FILE_SUFFIXES or Path(name).exists():
            records = read_prompt_records(name)[0][:limit]
            bench, source = Path(name).stem, str(name)
        else:
            raise EvalInputError(f"unknown benchmark {name!r}; known: {known_benchmarks()}, or a path to a "
                                 "JSONL/Parquet file with problem and answer fields")
    except PromptDataError as exc:
        raise EvalInputError(f"benchmark {name!r}: {exc}") from None
    prompts = tuple(record_prompt(r, f"{bench}-{i}", tokenizer, system) for i, r in enumerate(records))
    return EvalSet(bench, prompts, source)


def _synthetic_prompt(problem, tokenizer: PreTrainedTokenizerBase, system_prompt: str) -> Prompt:
    """A held-out problem, with its operand count as ``level`` for the per-level breakdown."""
    prompt = problem_prompt(problem, tokenizer, system_prompt)
    return Prompt(prompt.prompt_id, prompt.question, prompt.gold_answer, prompt.text, prompt.pass_rate,
                  prompt.source, (*prompt.metadata, ("level", str(problem.num_operands))))
