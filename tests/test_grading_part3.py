"""Part 3's graded exercises (07 traffic, 08 accumulate_gradients, 09 diagnose): each score gives full marks to a
right answer and nothing to a wrong or missing one, on cases drawn as the grader draws them; 09 end to end."""
import os
import random
import types

import pytest

from labs.course.accumulation import accumulate_gradients
from labs.exercises import nb07, nb08, nb09
from labs.grading import plain
from labs.grading.grader import grade_notebook
from labs.theory import traffic
from labs.timeline import analysis

from .exercise_copy import exercise_copy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_IMPLEMENTED = {"not_implemented": True}


def _outputs(graded, fn, cases):
    """What the kernel would send back: the run adapter (or fn itself) on each case, as plain data."""
    if graded.run:
        module, name = graded.run.split(":")
        run = getattr(__import__(module, fromlist=[name]), name)
        return [plain(run(fn, *case)) for case in cases]
    return [plain(fn(*case)) for case in cases]


def test_traffic_score():
    graded = nb07.GRADED[0]
    cases = graded.cases(random.Random(1))
    assert graded.score(cases, _outputs(graded, traffic, cases))[0] == 1.0
    one_way = _outputs(graded, lambda P, M, v, b: (traffic(P, M, v, b)[0] // 2, traffic(P, M, v, b)[1] // 2), cases)
    fraction, message = graded.score(cases, one_way)
    assert fraction < 0.3 and "gradient that comes back" in message
    assert graded.score(cases, [NOT_IMPLEMENTED] * len(cases))[0] == 0.0


def test_accumulation_score_uses_the_pipeline_and_catches_missing_scaling():
    graded = nb08.GRADED[0]
    cases = graded.cases(random.Random(2))
    assert graded.score(cases, _outputs(graded, accumulate_gradients, cases)) == (1.0, "all 10 cases passed")

    def unscaled(model, inputs, targets, M):
        grads = accumulate_gradients(model, inputs, targets, M)
        return {k: v * M for k, v in grads.items()}
    fraction, message = graded.score(cases, _outputs(graded, unscaled, cases))
    assert fraction < 0.5 and "divide each micro-batch's loss by M" in message
    assert graded.score(cases, [NOT_IMPLEMENTED] * len(cases))[0] == 0.0


def test_diagnose_score_on_hidden_traces_with_partial_credit():
    graded = nb09.GRADED[0]
    cases = graded.cases(random.Random(3))
    reference = types.FunctionType(analysis.diagnose.__code__, analysis.diagnose.__globals__)
    assert graded.score(cases, _outputs(graded, reference, cases))[0] == 1.0
    def cause_only(trace):
        answer = reference(trace)
        return {**answer, "where": "?"} if answer["where"] is not None else answer
    causes_only = graded.score(cases, _outputs(graded, cause_only, cases))[0]
    assert causes_only == pytest.approx(0.5 + 0.5 * 8 / 16)  # healthy and few micro-batches have no where
    fraction, message = graded.score(cases, _outputs(graded, lambda t: {"cause": "healthy", "where": None}, cases))
    assert fraction == 0.25 and "the trace's cause is 'slow link'" in message


def test_part_three_notebook_09_solved_full_marks_and_student_zero(tmp_path):
    """Graded on exercise-only copies (tests/exercise_copy.py); nbval runs the whole notebooks (-45 s)."""
    (tmp_path / "solved").mkdir()
    (tmp_path / "student").mkdir()
    solved = grade_notebook(exercise_copy(os.path.join(ROOT, "solutions", "09_bubble_detective.ipynb"),
                                          tmp_path / "solved"))
    student = grade_notebook(exercise_copy(os.path.join(ROOT, "notebooks", "09_bubble_detective.ipynb"),
                                           tmp_path / "student"))
    assert solved["score"] == solved["max_score"] == 3, solved
    assert student["score"] == 0, student
