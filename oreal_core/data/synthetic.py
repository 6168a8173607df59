"""A synthetic multi-step integer arithmetic task with worked solutions (the tiny demo task).

Each problem chains 2..N operands with + and - ("What is 47 + 28 - 15?"); its worked
solution applies one operation per line and ends in ``\\boxed{answer}``, the format the
verifier extracts. Difficulty is tuned by the operand count and the operand range.

Splits are deterministic and disjoint by construction: a question belongs to the held-out
split iff a hash of its text falls in the held-out bucket, so no seed or size can leak a
held-out question into training. Generation is pure Python (no I/O), seeded per split.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Literal

GENERATOR = "arith-v1"  # bump when the question/solution format changes (it keys the SFT cache)
HELDOUT_BUCKETS = 10  # 1 bucket in 10 of the question space is held out

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class ArithmeticSpec:
    """Difficulty of the task: operand count range, operand range and operators."""

    min_operands: int = 2
    max_operands: int = 3
    max_value: int = 99  # operands are drawn from [0, max_value]
    operators: str = "+-"

    def __post_init__(self) -> None:
        if not 2 <= self.min_operands <= self.max_operands:
            raise ValueError(f"operands: need 2 <= min_operands <= max_operands, got "
                             f"{self.min_operands}..{self.max_operands}")
        if self.max_value < 1:
            raise ValueError(f"max_value: must be >= 1, got {self.max_value}")
        if not self.operators or set(self.operators) - set("+-*"):
            raise ValueError(f"operators: a non-empty subset of '+-*', got {self.operators!r}")


@dataclass(frozen=True)
class Problem:
    """One generated problem with its worked solution and provenance."""

    problem_id: str
    question: str
    solution: str  # worked steps ending in \boxed{answer}
    answer: str
    split: Split
    source: str  # generator, spec and seed: enough to regenerate it

    @property
    def num_operands(self) -> int:
        return self.solution.count("\n") + 1  # one line per operation, then the answer line


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _make(rng: random.Random, spec: ArithmeticSpec) -> tuple[str, str, str]:
    count = rng.randint(spec.min_operands, spec.max_operands)
    operands = [rng.randint(0, spec.max_value) for _ in range(count)]
    ops = [rng.choice(spec.operators) for _ in range(count - 1)]
    expression = " ".join([str(operands[0])] + [f"{op} {v}" for op, v in zip(ops, operands[1:], strict=True)])
    steps, total = [], operands[0]
    for op, value in zip(ops, operands[1:], strict=True):  # left to right: only + and - mix here
        result = _apply(op, total, value)
        steps.append(f"{total} {op} {value} = {result}")
        total = result
    solution = "\n".join(steps) + f"\nThe answer is \\boxed{{{total}}}."
    return f"What is {expression}?", solution, str(total)


def split_of(question: str) -> Split:
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big") % HELDOUT_BUCKETS
    return "heldout" if bucket == 0 else "train"


def generate(spec: ArithmeticSpec, split: Split, size: int, seed: int) -> list[Problem]:
    """``size`` distinct problems of ``split``, deterministic in (spec, split, size, seed)."""
    if "*" in spec.operators and len(spec.operators) > 1:
        raise ValueError("operators: '*' cannot be mixed with '+'/'-' (left-to-right steps would be wrong)")
    rng = random.Random(f"{GENERATOR}:{seed}:{split}")
    source = (f"{GENERATOR}:operands={spec.min_operands}-{spec.max_operands}:max_value={spec.max_value}"
              f":ops={spec.operators}:seed={seed}:split={split}")
    problems: list[Problem] = []
    seen: set[str] = set()
    attempts = 0
    while len(problems) < size:
        attempts += 1
        if attempts > 50 * size + 1000:
            raise ValueError(f"synthetic task: only {len(problems)} distinct {split} problems of {size} "
                             f"exist for {spec}; widen max_value or the operand range")
        question, solution, answer = _make(rng, spec)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        digest = hashlib.sha256(question.encode()).hexdigest()[:12]
        problems.append(Problem(f"{GENERATOR}-{digest}", question, solution, answer, split, source))
    return problems


_BOXED_INT = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def boxed_answer(response: str) -> str | None:
    """The integer in the last ``\\boxed{...}`` of a response, or None."""
    found = _BOXED_INT.findall(response)
    return str(int(found[-1])) if found else None


def is_correct(response: str, problem: Problem) -> bool:
    """Exact answer match: the task's answers are integers, so equality is the right check."""
    return boxed_answer(response) == problem.answer
