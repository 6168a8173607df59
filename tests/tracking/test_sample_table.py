"""The sample rollouts' text table: a response stays in its cell."""

from __future__ import annotations

from oreal_core.tracking.sample_table import RESPONSE_CHARS, cell


def test_a_response_stays_one_cell():
    assert cell("a | b\nc") == "a \\| b<br>c"
    assert cell("\\boxed{3}") == "\\\\boxed{3}"  # markdown shows one backslash
    assert len(cell("x" * 5000)) == RESPONSE_CHARS + 3
