"""Equivalent rewritings and perturbations of MATH-500 gold answers.

Each rule applies only where it makes sense for the gold (an integer, a \\frac, a tuple,
...), so every variant is, by construction, equivalent (rewritings) or not (perturbations).
Shared by tests/verify/test_equivalence_math500.py and benchmarks/verify.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

MATH500 = Path(__file__).parent / "data" / "math500.jsonl"
_INT = re.compile(r"-?\d+")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_TEXT = re.compile(r"\\text\{\s*\(?([^{}]*?)\)?\s*\}")


def gold_answers() -> list[str]:
    return [json.loads(line)["answer"] for line in MATH500.read_text().splitlines() if line.strip()]


def _terminating(fr: Fraction) -> str | None:
    d = fr.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return None if d != 1 else f"{float(fr):.10g}"


def _decimal(g: str) -> str | None:
    if _INT.fullmatch(g):
        return f"{g}.0"
    m = _FRAC.fullmatch(g)
    if m and int(m.group(3)):
        return _terminating(Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1))
    return None


def _slash(g: str) -> str | None:
    m = _FRAC.fullmatch(g)
    return f"{m.group(1)}{m.group(2)}/{m.group(3)}" if m else None


def _dfrac(g: str) -> str | None:
    return g.replace("\\frac", "\\dfrac") if "\\frac" in g and "\\dfrac" not in g else None


def _spacing(g: str) -> str | None:
    spaced = re.sub(r"\s*([+=,]|(?<=[\w}])-)\s*", r" \1 ", g).strip()
    return spaced if spaced != g else None


def _left_right(g: str) -> str | None:
    if "\\left" in g:
        return g.replace("\\left", "").replace("\\right", "")
    if g.startswith("(") and g.endswith(")") and "," in g:
        return f"\\left({g[1:-1]}\\right)"
    return None


def _degrees(g: str) -> str | None:
    return f"{g}^{{\\circ}}" if _INT.fullmatch(g) else None


def _text_wrapper(g: str) -> str | None:
    m = _TEXT.fullmatch(g)
    if m:
        return m.group(1)  # \text{Evelyn} -> Evelyn, \text{(C)} -> C
    return f"{g} \\text{{ cm}}" if _INT.fullmatch(g) else None


def _unwrap_degrees(g: str) -> str | None:
    return g.replace("^\\circ", "") if g.endswith("^\\circ") else None


REWRITINGS: dict[str, Callable[[str], str | None]] = {
    "decimal": _decimal, "slash_fraction": _slash, "dfrac": _dfrac, "spacing": _spacing,
    "left_right": _left_right, "degrees": _degrees, "unwrap_degrees": _unwrap_degrees,
    "text_wrapper": _text_wrapper,
}


def _bump_digit(g: str) -> str | None:
    m = re.search(r"\d", g)
    return g[:m.start()] + str((int(m.group()) + 1) % 10) + g[m.end():] if m else None


def _negate(g: str) -> str | None:
    simple = _INT.fullmatch(g) or _FRAC.fullmatch(g) or re.fullmatch(r"-?\d*\\sqrt\{\d+\}", g)
    if not simple or re.fullmatch(r"-?0+", g):
        return None
    return g[1:] if g.startswith("-") else f"-{g}"


def _reciprocal(g: str) -> str | None:
    m = _FRAC.fullmatch(g)
    if not m or m.group(2) == m.group(3) or m.group(2) == "0":
        return None
    return f"{m.group(1)}\\frac{{{m.group(3)}}}{{{m.group(2)}}}"


def _other_text(g: str) -> str | None:
    m = _TEXT.fullmatch(g)
    if not m:
        return None
    inner = m.group(1)
    if re.fullmatch(r"[A-E]", inner):
        return f"\\text{{({'B' if inner == 'A' else 'A'})}}"
    return "\\text{Nobody}"


PERTURBATIONS: dict[str, Callable[[str], str | None]] = {
    "bump_digit": _bump_digit, "negate": _negate, "reciprocal": _reciprocal, "other_text": _other_text,
}


def variants(golds: list[str]) -> list[tuple[str, str, str, bool]]:
    """(gold, variant, rule name, should_be_equivalent) for every rule that applies."""
    out = []
    for gold in golds:
        for table, equivalent in ((REWRITINGS, True), (PERTURBATIONS, False)):
            for name, rule in table.items():
                variant = rule(gold)
                if variant is not None and variant != gold:
                    out.append((gold, variant, name, equivalent))
    return out
