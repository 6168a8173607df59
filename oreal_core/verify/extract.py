"""Answer extraction from a policy response (OREAL_SPEC.md §4, steps 2-3).

Pure string code, no sympy: it runs in the calling process for every sample, so it has to
be cheap and total (any input string gives a result, never an exception).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_ANSWER_IS = re.compile(r"[Tt]he (?:final )?answer is[:\s]*(.+)", re.DOTALL)
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


def _balanced_content(text: str, open_brace: int) -> str | None:
    """Content between text[open_brace] == '{' and its matching '}', or None if unbalanced."""
    depth = 0
    for i in range(open_brace, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1:i]
    return None


def _last_boxed(text: str) -> tuple[str | None, str]:
    """Content of the last balanced \\boxed{...} (or \\fbox{...}); earlier boxes are fallbacks."""
    starts = sorted((i for opener in _BOX_OPENERS for i in _find_all(text, opener)), reverse=True)
    skipped = 0
    for start in starts:
        content = _balanced_content(text, text.index("{", start))
        if content is not None:
            detail = f"{skipped} later unbalanced \\boxed skipped" if skipped else ""
            return content.strip(), detail
        skipped += 1
    return None, f"{skipped} unbalanced \\boxed" if skipped else ""


def _find_all(text: str, needle: str) -> list[int]:
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def extract_answer(summary: str) -> Extraction:
    """Last \\boxed{} with brace matching; else "The (final) answer is ..."; else the last number.

    Only the first line of the result is kept, like the reference's ``extract_answer``.
    """
    boxed, detail = _last_boxed(summary)
    if boxed is not None:
        return Extraction(boxed, "boxed", detail) if boxed else Extraction(None, "none", "empty \\boxed{}")
    matches = list(_ANSWER_IS.finditer(summary))
    if matches:
        line = matches[-1].group(1).strip().splitlines()[0].strip().rstrip(".").strip("$ ")
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
