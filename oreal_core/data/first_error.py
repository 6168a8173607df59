"""Where a response to the synthetic arithmetic task first goes wrong (docs/token-rm.md).

The task's worked solution (oreal_core/data/synthetic.py) applies one operation per line,
left to right, then states the answer:

    What is 8 - 15 - 28?   ->   8 - 15 = -7
                                -7 - 28 = -35
                                The answer is \\boxed{-35}.

so every token of a response can be checked against the question. The first wrong token
is the ground truth a token-level RM should point at: OREAL's RM is meant to find the
tokens that decided a wrong outcome (paper §3.3), and here we know which ones they are.

Pure string work, no tokenizer: a caller maps text to tokens with the tokens' character
offsets.
"""

from __future__ import annotations

import re
from bisect import bisect_right

_QUESTION = re.compile(r"What is (\d+(?:\s*[-+*]\s*\d+)+)\?")
_TERM = re.compile(r"\d+|[-+*]")
# One worked step, "a op b = r"; a and r may be negative (a running total below 0).
_STEP = re.compile(r"^[ \t]*(-?\d+)[ \t]*([-+*])[ \t]*(-?\d+)[ \t]*=[ \t]*(-?\d+)[ \t]*$")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_INT = re.compile(r"^\s*-?\d+\s*$")


def parse_question(question: str) -> tuple[list[int], list[str]] | None:
    """(operands, operators) of "What is 47 + 28 - 15?", or None for another question."""
    found = _QUESTION.search(question)
    if found is None:
        return None
    terms = _TERM.findall(found.group(1))
    return [int(t) for t in terms[0::2]], terms[1::2]


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _lines(text: str) -> list[tuple[int, str]]:
    """(start offset, text) of each line."""
    out, start = [], 0
    for line in text.split("\n"):
        out.append((start, line))
        start += len(line) + 1
    return out


def _step_error(line: re.Match, carried: int, op: str | None, operand: int | None) -> int | None:
    """Offset within the line of the leftmost wrong element of "a op b = r", or None.

    ``op``/``operand`` None: the question has no operation left, so the step's operand is
    one the question does not have."""
    a, written_op, b, result = line.group(1, 2, 3, 4)
    if int(a) != carried:  # a carried value that is not the previous line's result (or the first operand)
        return line.start(1)
    if op is None or operand is None:
        return line.start(3)
    if written_op != op:
        return line.start(2)
    if int(b) != operand:
        return line.start(3)
    if int(result) != _apply(op, carried, operand):
        return line.start(4)
    return None


def first_wrong_char(question: str, response: str) -> int | None:
    """Character offset in ``response`` where its first error starts, or None.

    Lines are read in order against the question; the first of these is the error:
    a step whose left operand is not the running total (the first operand on the first
    line, the previous line's written result after), whose operator or right operand is not
    the question's next one (or that goes past the question's last operation), or whose
    result is wrong arithmetic; then a \\boxed answer that is not the question's answer.
    The offset is where the wrong number (or operator) starts.

    None: no error before the first \\boxed answer (a correct solution), the question is not
    the task's, or the response leaves the format (a non-blank line that is neither a step
    nor the answer line) before any error: there the first wrong token is not well defined.
    """
    parsed = parse_question(question)
    if parsed is None:
        return None
    operands, ops = parsed
    answer = operands[0]
    for op, value in zip(ops, operands[1:], strict=True):
        answer = _apply(op, answer, value)
    carried, done = operands[0], 0
    for start, line in _lines(response):
        step = _STEP.match(line)
        if step is not None:
            more = done < len(ops)
            wrong = _step_error(step, carried, ops[done] if more else None, operands[done + 1] if more else None)
            if wrong is not None:
                return start + wrong
            carried, done = int(step.group(4)), done + 1
            continue
        boxed = _BOXED.search(line)
        if boxed is not None:
            content = boxed.group(1)
            right = _INT.match(content) is not None and int(content) == answer
            return None if right else start + boxed.start(1) + (len(content) - len(content.lstrip()))
        if line.strip():
            return None  # out of format before any error
    return None  # no answer line: nothing was wrong up to where it stopped


def token_at(offsets: list[int], char: int) -> int:
    """Index of the token holding character ``char``, from each token's start offset
    (non-decreasing; a token that decodes to no text shares its successor's offset)."""
    return bisect_right(offsets, char) - 1


def first_wrong_token(question: str, response: str, offsets: list[int]) -> int | None:
    """Index of the response token where the first error starts (first_wrong_char), given
    each response token's start offset in ``response``; None as first_wrong_char."""
    char = first_wrong_char(question, response)
    if char is None or not offsets:
        return None
    return token_at(offsets, char)
