import pytest

from oreal_core.config import SyntheticTaskConfig
from oreal_core.data.synthetic import ArithmeticSpec, boxed_answer, generate, is_correct, split_of
from oreal_core.data.tasks import synthetic_splits


def test_worked_solution_steps_are_right_and_end_in_boxed_answer():
    for problem in generate(ArithmeticSpec(min_operands=3, max_operands=3), "train", 50, seed=1):
        expression = problem.question.removeprefix("What is ").removesuffix("?")
        assert str(eval(expression)) == problem.answer  # noqa: S307 - our own generated digits and +/-
        *steps, last = problem.solution.split("\n")
        assert len(steps) == 2 and last == f"The answer is \\boxed{{{problem.answer}}}."
        for step in steps:
            lhs, rhs = step.split(" = ")
            assert str(eval(lhs)) == rhs  # noqa: S307
        assert is_correct(problem.solution, problem) and problem.num_operands == 3


def test_splits_are_deterministic_disjoint_and_carry_provenance():
    cfg = SyntheticTaskConfig(train_size=2000, heldout_size=200, seed=3)
    train, heldout = synthetic_splits(cfg)
    again_train, again_heldout = synthetic_splits(cfg)
    assert train == again_train and heldout == again_heldout
    assert not {p.question for p in train} & {p.question for p in heldout}
    assert len({p.problem_id for p in train}) == 2000
    assert all(split_of(p.question) == "heldout" for p in heldout)
    assert "seed=3" in heldout[0].source and "split=heldout" in heldout[0].source
    other, _ = synthetic_splits(SyntheticTaskConfig(train_size=2000, heldout_size=200, seed=4))
    assert [p.question for p in other] != [p.question for p in train]


def test_difficulty_knobs_change_the_problems():
    easy = generate(ArithmeticSpec(2, 2, max_value=9), "train", 30, seed=0)
    hard = generate(ArithmeticSpec(4, 4, max_value=999), "train", 30, seed=0)
    assert all(p.num_operands == 2 and all(len(t) == 1 for t in p.question[8:-1].split(" ")[::2]) for p in easy)
    assert all(p.num_operands == 4 for p in hard)


def test_too_small_a_space_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct train problems"):
        generate(ArithmeticSpec(2, 2, max_value=2, operators="+"), "train", 100, seed=0)


def test_boxed_answer_takes_the_last_box_and_rejects_non_integers():
    assert boxed_answer("x \\boxed{3} then \\boxed{-12}.") == "-12"
    assert boxed_answer("\\boxed{007}") == "7"
    assert boxed_answer("\\boxed{x}") is None and boxed_answer("no box") is None
