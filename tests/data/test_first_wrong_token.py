"""The first wrong token of synthetic-task responses, on crafted responses and real token
offsets (the tiny policy's byte-level tokenizer, a task corpus so words merge)."""

import pytest

from oreal_core.data.first_error import (
    first_wrong_char,
    first_wrong_token,
    parse_question,
    token_at,
)
from oreal_core.data.synthetic import ArithmeticSpec, generate
from oreal_core.models.tiny import IM_END, build_tokenizer
from oreal_core.pipeline.rm_localisation import token_offsets

Q = "What is 47 + 28 - 15?"  # 47 + 28 = 75, 75 - 15 = 60
RIGHT = "47 + 28 = 75\n75 - 15 = 60\nThe answer is \\boxed{60}."


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [p.solution for p in generate(ArithmeticSpec(), "train", 200, seed=0)]
    return build_tokenizer(corpus, vocab_size=300)


def wrong_token(tokenizer, response: str) -> tuple[int | None, list[str]]:
    """first_wrong_token over the response as the rollout stores it (stop token included),
    and the decoded tokens, to name the expected one."""
    text = response + IM_END
    ids = tokenizer.encode(text)
    offsets = token_offsets(tokenizer, ids, text)
    assert offsets is not None and len(offsets) == len(ids)
    index, char = first_wrong_token(Q, text, offsets), first_wrong_char(Q, text)
    pieces = [tokenizer.decode([i]) for i in ids]
    if index is not None:  # the token holds the error's first character
        assert len("".join(pieces[:index])) <= char < len("".join(pieces[:index + 1]))
    return index, pieces


def test_parse_question():
    assert parse_question(Q) == ([47, 28, 15], ["+", "-"])
    assert parse_question("<|im_start|>user\nWhat is 3 * 4?<|im_end|>") == ([3, 4], ["*"])
    assert parse_question("Compute the integral") is None


def test_correct_solution_has_no_wrong_token(tokenizer):
    assert wrong_token(tokenizer, RIGHT)[0] is None
    assert first_wrong_char("What is 8 - 15 - 28?", "8 - 15 = -7\n-7 - 28 = -35\nThe answer is \\boxed{-35}.") is None


def test_wrong_sum_in_line_2_points_at_that_number(tokenizer):
    response = "47 + 28 = 75\n75 - 15 = 61\nThe answer is \\boxed{61}."
    assert first_wrong_char(Q, response) == response.index("61")
    index, pieces = wrong_token(tokenizer, response)
    assert pieces[index] == "6" and "".join(pieces[:index]).endswith("75 - 15 = ")


def test_wrong_carried_value(tokenizer):
    # line 1 is right, line 2 starts from 76 instead of the 75 it just wrote
    response = "47 + 28 = 75\n76 - 15 = 61\nThe answer is \\boxed{61}."
    assert first_wrong_char(Q, response) == response.index("76")
    index, pieces = wrong_token(tokenizer, response)
    assert "".join(pieces[:index]).endswith("75\n") and pieces[index].startswith("7")


def test_wrong_operand_and_operator(tokenizer):
    assert first_wrong_char(Q, "47 + 29 = 76\n76 - 15 = 61") == len("47 + ")
    assert first_wrong_char(Q, "47 - 28 = 19") == len("47 ")
    assert first_wrong_char("What is 2 + 3?", "2 + 3 = 5\n5 + 1 = 6") == len("2 + 3 = 5\n5 + ")  # no such step


def test_an_error_carried_on_consistently_is_found_where_it_started():
    response = "47 + 28 = 74\n74 - 15 = 59\nThe answer is \\boxed{59}."
    assert first_wrong_char(Q, response) == response.index("74")


def test_wrong_final_answer_after_correct_lines(tokenizer):
    response = RIGHT.replace("boxed{60}", "boxed{-60}")
    assert first_wrong_char(Q, response) == response.index("-60")
    index, pieces = wrong_token(tokenizer, response)
    # BPE merged "{-": the wrong token is the one holding the error's first character
    assert "".join(pieces[:index]).endswith("\\boxed") and pieces[index] == "{-"
    not_a_number = RIGHT.replace("boxed{60}", "boxed{ x }")
    assert first_wrong_char(Q, not_a_number) == not_a_number.index("{ x") + 2


def test_a_first_wrong_digit_inside_a_number_still_names_the_number_start():
    # 75 written as 65: the number starts at "6"; 76: the number still starts at "7" (documented)
    assert first_wrong_char(Q, "47 + 28 = 76") == len("47 + 28 = ")


def test_garbage_and_out_of_format_responses_give_none(tokenizer):
    assert wrong_token(tokenizer, "blah blah 12 ++ 3")[0] is None
    assert first_wrong_char(Q, "") is None
    assert first_wrong_char(Q, "Let me think.\n47 + 28 = 99") is None  # off format before the error
    assert first_wrong_char(Q, "47 + 28 = 75\n75 - 15 = 60") is None  # stopped before answering: nothing wrong
    assert first_wrong_char("What is the capital of France?", RIGHT) is None
    # an error before the format breaks is still an error
    assert first_wrong_char(Q, "47 + 28 = 70\nhmm") == len("47 + 28 = ")


def test_generated_solutions_have_no_wrong_token():
    for p in generate(ArithmeticSpec(2, 4, max_value=99), "train", 100, seed=3):
        assert first_wrong_char(p.question, p.solution + IM_END) is None


def test_token_at_and_offsets_that_do_not_line_up(tokenizer):
    assert [token_at([0, 2, 2, 5], c) for c in (0, 1, 2, 4, 5, 9)] == [0, 0, 2, 2, 3, 3]
    ids = tokenizer.encode("é")  # two byte tokens: the first decodes to a replacement character
    assert token_offsets(tokenizer, ids, "é") is None
    assert token_offsets(tokenizer, tokenizer.encode("12 + 3"), "something else") is None
