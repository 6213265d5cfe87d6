"""Grading of notebooks 11 and 12: the grader-side scores give full marks to right answers, partial or none to wrong."""
import random

import pytest

from labs.exercises import nb11, nb12
from labs.schedules import Action, make, one_f_one_b, zb_h1
from tests.kernel_outputs import run_in_kernel_side


_outputs = run_in_kernel_side


def call(fn, case, forbidden=(), run=None):
    return _outputs(fn, [case], forbidden, run)[0]


def test_zb_h1_exercise_scores():
    cases = nb11._cases(random.Random(5))
    right = nb11._score(cases, _outputs(lambda P, M: zb_h1(P, M), cases))
    assert right[0] == 1.0, right[1]

    def w_after_b(P, M):  # split but nothing held back: 1F1B's bubble
        return [[x for a in acts for x in ([a] if a.kind == "F" else [a, Action(a.stage, "W", a.microbatch)])]
                for acts in one_f_one_b(P, M)]
    slow = nb11._score(cases, _outputs(w_after_b, cases))
    assert slow[0] == 0.0 and "idles where a W" in slow[1]
    for name, wrong in nb11.WRONG.items():  # every plausible mistake (how many W's a rank keeps back) earns nothing
        assert nb11._score(cases, _outputs(wrong, cases))[0] == 0.0, name
    cheat = nb11._score(cases, _outputs(lambda P, M: make("zb-h1", P, M), cases, ("labs.schedules.zero_bubble.zb_h1",)))
    assert cheat[0] == 0.0 and "calls labs.schedules.zero_bubble.zb_h1" in cheat[1]


def test_csv_exercise_scores():
    cases = nb12._csv_cases(random.Random(2))
    from labs.course.torch_bridge import to_csv
    run = "labs.exercises.nb12:run_to_torch_csv"
    assert nb12._csv_score(cases, [call(to_csv, c, (), run) for c in cases])[0] == 1.0
    # the course's actions are PyTorch's four kinds (F, I, W, B) now, so writing them as they are is the export
    naive = nb12._csv_score(cases, [call(lambda s: "\n".join(",".join(map(str, r)) for r in s) + "\n", c, (), run)
                                    for c in cases])
    assert naive[0] == 1.0
    # negative control: the course's old split notation (the input gradient written B next to W's) is refused
    old = nb12._csv_score(cases, [call(lambda s: "\n".join(",".join(str(a).replace("I", "B") for a in r) for r in s)
                                       + "\n", c, (), run) for c in cases])
    assert 0 < old[0] < 1 and "I" in old[1]

    def by_fields(schedule):  # the notebook's solution reads Action fields: the grader's strings arrive as Actions
        has_w = any(a.kind == "W" for actions in schedule for a in actions)
        return "".join(",".join(f"{a.stage}I{a.microbatch}" if has_w and a.kind == "B" else str(a) for a in acts)
                       + "\n" for acts in schedule)
    assert nb12._csv_score(cases, [call(by_fields, c, (), run) for c in cases])[0] == 1.0


# my_schedule and choose_design: tests/test_exercise12.py


@pytest.mark.parametrize("module", [nb11, nb12])
def test_graded_entries_exist(module):
    assert module.GRADED and all(g.points > 0 for g in module.GRADED)
