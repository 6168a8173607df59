"""Answer extraction from a policy response (OREAL_SPEC.md §4, steps 2-3).

Pure string code, no sympy: it runs in the calling process for every sample, outside the
rule check's timeout, so it has to be total (any input string gives a result, never an
exception) and linear in the length of the response: a degenerate policy emits 100k
characters of unbalanced ``\\boxed{`` and a quadratic scan would stall the whole stage.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is")
# After the phrase: skip ':' and blank space (newlines too), then keep one line (the line
# breaks of str.splitlines).
_REST_OF_LINE = re.compile(r"[:\s]*([^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]*)")
_BRACE = re.compile(r"[{}]")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Extraction:
    """The answer found in a response and how it was found (kept for the verdict's reason)."""

    answer: str | None
    method: str  # "boxed" | "answer_is" | "last_number" | "none"
    detail: str = ""


def summary_part(response: str, stop_word: str, thinking_finish_words: tuple[str, ...]) -> str:
    """The text after the last thinking-finish marker, without the stop word.

    Markers are applied in order, each cutting at its *last* occurrence, as the reference's
    MathJudger does; what remains is what the grader (rule or LLM) looks at.
    """
    text = response
    for marker in thinking_finish_words:
        cut = text.rfind(marker)
        if cut >= 0:
            text = text[cut + len(marker):]
    stripped = text.rstrip()
    if stop_word and stripped.endswith(stop_word):
        stripped = stripped[: -len(stop_word)]
    return stripped.strip()


def _brace_partners(text: str) -> dict[int, int]:
    """Index of every matched '{' -> index of its '}', in one pass with a stack.

    A stack pairs each '{' with the first '}' at which the depth counted from it returns
    to zero, i.e. exactly what a forward scan from that brace finds, but for all braces at
    once: O(n) instead of one O(n) scan per \\boxed.
    """
    partners: dict[int, int] = {}
    stack: list[int] = []
    for match in _BRACE.finditer(text):
        i = match.start()
        if text[i] == "{":
            stack.append(i)
        elif stack:
            partners[stack.pop()] = i
    return partners


def _last_boxed(text: str) -> tuple[str | None, str]:
    """Content of the last balanced \\boxed{...} (or \\fbox{...}); earlier boxes are fallbacks."""
    # Each opener ends with its '{'; openers never overlap, so brace order is opener order.
    braces = sorted((i + len(opener) - 1 for opener in _BOX_OPENERS for i in _find_all(text, opener)),
                    reverse=True)
    if not braces:
        return None, ""
    partners = _brace_partners(text)
    for skipped, brace in enumerate(braces):
        close = partners.get(brace)
        if close is not None:
            detail = f"{skipped} later unbalanced \\boxed skipped" if skipped else ""
            return text[brace + 1:close].strip(), detail
    return None, f"{len(braces)} unbalanced \\boxed"


def boxed_answers(text: str) -> list[str]:
    """Contents of every balanced \\boxed{...} / \\fbox{...}, in order (linear, like _last_boxed)."""
    braces = sorted(i + len(opener) - 1 for opener in _BOX_OPENERS for i in _find_all(text, opener))
    if not braces:
        return []
    partners = _brace_partners(text)
    return [text[b + 1:partners[b]].strip() for b in braces if b in partners]


def _find_all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def _after_last_answer_phrase(text: str) -> str:
    """The line after the *last* "The (final) answer is", as the reference's re.split(...)[-1]."""
    last = deque(_ANSWER_IS.finditer(text), maxlen=1)  # keeps only the last match
    if not last:
        return ""
    line = _REST_OF_LINE.match(text, last[0].end()).group(1)
    return line.strip().rstrip(".").strip("$ ")


def extract_answer(summary: str) -> Extraction:
    """Last \\boxed{} with brace matching; else "The (final) answer is ..."; else the last number.

    Only the first line of the result is kept, like the reference's ``extract_answer``.
    """
    boxed, detail = _last_boxed(summary)
    if boxed is not None:
        return Extraction(boxed, "boxed", detail) if boxed else Extraction(None, "none", "empty \\boxed{}")
    line = _after_last_answer_phrase(summary)
    if line:
        return Extraction(line, "answer_is", detail)
    numbers = _NUMBER.findall(summary)
    if numbers:
        return Extraction(numbers[-1].replace(",", ""), "last_number", detail)
    why = detail or ("empty response" if not summary.strip() else "no \\boxed{}, answer phrase or number")
    return Extraction(None, "none", why)


_SPACING = re.compile(r"\\[,!;: ]|\\quad|\\qquad|\s+")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])")


def normalise_answer(answer: str) -> str:
    """A cheap canonical form used as the verdict-cache key and as the exact-match fast path.

    It only removes presentation (spacing, \\dfrac vs \\frac, \\left/\\right, $ and a final
    period), so two answers with the same key are the same answer; it never decides
    equivalence beyond that.
    """
    text = answer.strip().rstrip(".").strip().strip("$")
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _SIZING.sub("", text)
    return _SPACING.sub("", text)
