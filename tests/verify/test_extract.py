import pytest

from oreal_core.verify.extract import extract_answer, normalise_answer, summary_part

MARKERS = ("<conclude>", "**Final Answer**", "</think>")


def test_summary_cuts_at_last_marker_and_strips_stop_word():
    text = "<think>try \\boxed{1}</think> hmm </think>\n**Final Answer** \\boxed{2}<|im_end|>"
    assert summary_part(text, "<|im_end|>", MARKERS) == "\\boxed{2}"


def test_summary_without_markers_keeps_everything():
    assert summary_part("so \\boxed{3}  <|im_end|>\n", "<|im_end|>", MARKERS) == "so \\boxed{3}"


@pytest.mark.parametrize(("summary", "answer", "method"), [
    ("first \\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}", "boxed"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", "boxed"),
    ("\\fbox{7}", "7", "boxed"),
    ("ok \\boxed{5} and then \\boxed{6", "5", "boxed"),  # last box unbalanced: earlier box wins
    ("The final answer is $42$.\nMore text", "42", "answer_is"),
    ("So we get 3, then 4.5 apples", "4.5", "last_number"),
    ("total 1,234 items", "1234", "last_number"),
    ("答案是 \\boxed{√2}", "√2", "boxed"),
])
def test_extraction(summary, answer, method):
    got = extract_answer(summary)
    assert (got.answer, got.method) == (answer, method)


@pytest.mark.parametrize(("summary", "why"), [
    ("", "empty response"),
    ("no numbers at all", "no \\boxed{}, answer phrase or number"),
    ("\\boxed{}", "empty \\boxed{}"),
    ("\\boxed{x + {y", "1 unbalanced \\boxed"),
])
def test_no_answer_says_why(summary, why):
    got = extract_answer(summary)
    assert got.answer is None and got.method == "none" and got.detail == why


def test_huge_input_is_fast():
    import time

    text = "x" * 100_000 + "\\boxed{" + "{" * 50_000
    start = time.perf_counter()
    got = extract_answer(text)
    assert time.perf_counter() - start < 1.0 and got.answer is None


def test_normalise_removes_presentation_only():
    assert normalise_answer("\\left( 3, \\dfrac{\\pi}{2} \\right)") == normalise_answer("(3,\\frac{\\pi}{2})")
    assert normalise_answer("$ x^2 + 1 $.") == "x^2+1"
    assert normalise_answer("12") != normalise_answer("21")
