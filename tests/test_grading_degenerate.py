"""Degenerate answers earn nothing (issue 14 part 3): trivial cases earn no credit on their own, a constant scores 0
unless it is right everywhere. Scores only, in this process: no kernel, no rank (the stubs of exercises that run on
ranks are covered by the class test, tests/test_grading_class.py)."""
from __future__ import annotations

import importlib
import pkgutil
import random

import pytest

import labs.exercises
from labs.exercises import nb02
from labs.exercises._common import exercise, score_cases
from labs.exercises._credit import credit, is_trivial
from labs.grading import constant_output, score_outputs

SEED = 14


def _cases(graded, seed=SEED):
    return [tuple(case) for case in graded.cases(random.Random(seed))]


def _graded(module, name):
    return next(g for g in module.GRADED if g.name == name)


IDLE = _graded(nb02, "idle_fraction")
SMALLEST = _graded(nb02, "smallest_m")


def _idle(P, M):
    return (P - 1) / (M + P - 1)


def test_the_issues_example_notebook_02_return_zero_scores_zero_on_both_exercises():
    for graded in (IDLE, SMALLEST):
        cases = _cases(graded)
        fraction, message = score_outputs(graded, cases, [0.0] * len(cases))
        assert fraction == 0.0 and "returned 0" in message, message
    # without the constant rule too: the trivial-case rule alone gives 0 (the P=1 cases were worth 0.14 of 2 points)
    cases = _cases(IDLE)
    assert any(P == 1 for P, _ in cases)
    fraction, message = score_cases(cases, [0.0] * len(cases), nb02.idle_problem)
    assert fraction == 0.0 and "trivial cases right earn nothing" in message, message


def test_a_stub_that_special_cases_the_trivial_answers_still_scores_zero():
    cases = _cases(IDLE)
    outputs = [0.0 if P == 1 else 0.4242 for P, _ in cases]  # right on every P = 1 case, not constant
    assert not constant_output(outputs)
    assert score_outputs(IDLE, cases, outputs)[0] == 0.0
    smallest = _cases(SMALLEST)
    outputs = [1 if P == 1 else 7 for P, *_ in smallest]  # right on one rank, where one micro-batch is enough
    assert not constant_output(outputs) and score_outputs(SMALLEST, smallest, outputs)[0] == 0.0


def test_negative_controls_right_answers_full_marks_and_a_slip_on_a_trivial_case_costs_one_case():
    cases = _cases(IDLE)
    right = [_idle(P, M) for P, M in cases]
    assert score_outputs(IDLE, cases, right)[0] == 1.0
    trivial = [is_trivial(nb02.idle_problem, case) for case in cases]
    non_trivial = trivial.count(False)
    assert trivial == [P == 1 for P, _ in cases]  # P = 1 (answer 0) and nothing else is trivial here
    slipped = [0.5 if P == 1 else _idle(P, M) for P, M in cases]  # right except where it is trivial
    fraction, message = score_outputs(IDLE, cases, slipped)
    assert fraction == pytest.approx((non_trivial - trivial.count(True)) / non_trivial)
    assert "trivial case" in message
    one_wrong = list(right)
    one_wrong[cases.index(next(c for c in cases if c[0] > 1))] = 0.99  # one non-trivial case wrong
    assert score_outputs(IDLE, cases, one_wrong)[0] == pytest.approx((non_trivial - 1) / non_trivial)


def test_credit_declared_trivial_answers_and_plausible_mistakes():
    @exercise("double", trivial=lambda case: [case[0]], wrong={"forgot to double": lambda x: x})
    def problem(case, got):
        return None if got == 2 * case[0] else f"double({case[0]}) returned {got!r}, expected {2 * case[0]}"

    assert is_trivial(problem, (0,))      # 0 is a canonical degenerate answer there
    assert not is_trivial(problem, (3,))
    assert is_trivial(problem, (0.5,))    # 1.0 passes
    cases = [(0,), (3,), (4,), (5,)]
    assert score_cases(cases, [0, 6, 8, 10], problem)[0] == 1.0
    assert score_cases(cases, [0, 3, 4, 5], problem)[0] == 0.0      # the plausible mistake: right only on 0
    assert score_cases(cases, [7, 6, 8, 10], problem)[0] == pytest.approx(2 / 3)  # a wrong trivial case costs one
    fraction, _, head = credit([((0,), None, True), ((1,), None, True)])
    assert fraction == 0.0 and "no case with a non-trivial answer" in head


def test_constant_output_rule():
    assert constant_output([0, 0.0, 0]) and constant_output([[], [], []]) and constant_output([{"a": 1}] * 3)
    assert not constant_output([0, 0]) and not constant_output([0, 0, 1]) and not constant_output([True, 1, 1])


def _graded_without_ranks():
    for info in pkgutil.iter_modules(labs.exercises.__path__):
        if info.name.startswith("nb"):
            module = importlib.import_module(f"labs.exercises.{info.name}")
            for graded in getattr(module, "GRADED", ()):  # nbNN.py grades; nbNN_topic.py helps it
                if graded.run is None:
                    yield pytest.param(graded, id=f"{info.name}-{graded.name}")


@pytest.mark.parametrize("graded", list(_graded_without_ranks()))
def test_every_constant_stub_scores_zero_on_every_exercise(graded):
    """Every exercise that the kernel answers with plain return values: canonical degenerate answers (``DEGENERATE``),
    returned for every case, score 0 (a new or reworked exercise is covered as soon as it is in GRADED)."""
    cases = _cases(graded)
    for stub in (0.0, 1, None, [], {}):  # a few of DEGENERATE: each scoring of 02 or 07 costs about a second
        fraction, message = score_outputs(graded, cases, [stub] * len(cases))
        assert fraction == 0.0, (graded.name, stub, message)
