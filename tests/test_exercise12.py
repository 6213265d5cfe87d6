"""Notebook 12's graded exercises. my_schedule: lists under a memory cap below P (a property no labs or PyTorch
schedule has) judged by the validator, the simulator's peaks and the grader's capped schedule, one case trained on real
ranks; choose_design: the learner's own memory model, each plausible wrong one losing credit."""
import os
import random

import nbformat
import pytest

from labs.exercises import nb12, nb12_design
from labs.grading.kernel import plain
from labs.schedules import make
from tests.kernel_outputs import run_in_kernel_side

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_outputs = run_in_kernel_side


def _solution(name):
    """The solution notebook's own function (its source, run here), not the grader's."""
    nb = nbformat.read(os.path.join(ROOT, "solutions", "12_capstone.ipynb"), 4)
    source = next(c.source for c in nb.cells if c.cell_type == "code" and f"def {name}(" in c.source)
    import labs
    namespace = {"labs": labs}
    exec(compile(source, f"solutions/12 {name}", "exec"), namespace)  # noqa: S102 - the course's own solution
    return namespace[name]


def _waves(P, M, cap):
    return nb12._waves(P, M, cap)


def _flat(P, M, cap):  # warm-up cap - 1 on every rank, the last included
    lists = []
    for r in range(P):
        warmup = min(cap - 1, M)
        actions = [f"{r}F{m}" for m in range(warmup)]
        for i in range(M - warmup):
            actions += [f"{r}F{warmup + i}", f"{r}B{i}"]
        lists.append(actions + [f"{r}B{m}" for m in range(M - warmup, M)])
    return lists


SIM_CASES = [c for c in nb12._schedule_cases(random.Random(4)) if not c[3]] + [c for c in nb12.VISIBLE_SCHEDULES
                                                                              if not c[3]]


def _credits(fn, cases=SIM_CASES):
    return [nb12.schedule_credit(plain(fn(P, M, cap)), P, M, cap)[0] for P, M, cap, _ in cases]


def test_my_schedule_full_credit_for_a_schedule_at_least_as_fast_as_the_graders():
    assert _credits(_solution("my_schedule")) == [1.0] * len(SIM_CASES)
    assert _credits(nb12.capped_reference) == [1.0] * len(SIM_CASES)


def test_my_schedule_the_reference_schedules_break_the_cap():
    for name in ("gpipe", "1f1b", "zb-h1"):
        credits = _credits(lambda P, M, cap: make(name, P, M))
        assert credits == [0.0] * len(SIM_CASES), name
    off_by_one = lambda P, M, cap: nb12._capped_1f1b(P, M, cap + 1)  # noqa: E731
    assert _credits(off_by_one) == [0.0] * len(SIM_CASES)
    credit, message = nb12.schedule_credit(plain(make("1f1b", 4, 4)), 4, 4, 2)
    assert credit == 0.0 and "rank 0 holds 4" in message


def test_my_schedule_nearly_right_earns_half():
    cases = [(4, 4, 2, False), (5, 10, 3, False), (3, 7, 2, False), (6, 7, 5, False)]
    for nearly in (nb12._capped_1f1b, _waves, _flat):
        credits = _credits(nearly, cases)
        assert 0.5 in credits and set(credits) <= {0.5, 1.0}, (nearly, credits)


def test_my_schedule_refuses_split_backwards_and_the_graders_schedule():
    credit, message = nb12.schedule_credit(plain(make("zb-h1", 4, 6)), 4, 6, 4)
    assert credit == 0.0 and "F and B" in message
    cases = [(4, 4, 2, False)]
    out = _outputs(lambda P, M, cap: nb12.capped_reference(P, M, cap), cases, nb12.SCHEDULE_FORBIDDEN,
                   "labs.exercises.nb12:run_my_schedule")
    assert nb12._schedule_score(cases, out)[0] == 0.0
    out = _outputs(_solution("my_schedule"), cases, nb12.SCHEDULE_FORBIDDEN, "labs.exercises.nb12:run_my_schedule")
    assert nb12._schedule_score(cases, out)[0] == 1.0


def test_my_schedule_trained_case_on_real_ranks():
    cases = [(4, 4, 2, True)]
    assert nb12._schedule_score(cases, [plain(nb12.capped_reference(4, 4, 2))])[0] == 1.0
    broken = plain(nb12.capped_reference(4, 4, 2))
    broken[0] = broken[0][::-1]  # backwards before forwards
    score, message = nb12._schedule_score(cases, [broken])
    assert score == 0.0 and "validator" in message


def test_choose_design_right_memory_model_scores_full_and_each_mistake_less():
    cases = nb12_design.cases(random.Random(7))
    right = _solution("choose_design")
    assert nb12_design.score(cases, [right(cap, dict(costs)) for cap, costs in cases])[0] == 1.0
    assert nb12.check_choose_design(right)
    for name in nb12_design.MISTAKES:
        wrong = [nb12_design.wrong_choice(name, cap, costs) for cap, costs in cases]
        assert nb12_design.score(cases, wrong)[0] <= 0.8, name


def test_choose_design_constants_errors_and_the_graders_search_score_nothing():
    cases = nb12_design.cases(random.Random(3))
    for constant in ({"schedule": "1f1b", "M": 32, "v": 1}, {"schedule": "gpipe", "M": 1, "v": 1}, None, {}):
        assert nb12_design.score(cases, [constant] * len(cases))[0] == 0.0
    assert nb12_design.score(cases, [{"error": "TypeError: x"}] * len(cases))[0] == 0.0
    forbidden = ("labs.exercises.nb12_design.best_design", "labs.exercises.nb12_design.design_outcome")
    out = _outputs(lambda cap, costs: nb12_design.best_design(cap, costs), cases[:2], forbidden)
    assert nb12_design.score(cases[:2], out)[0] == 0.0
    out = _outputs(_solution("choose_design"), cases[:2], forbidden)
    assert nb12_design.score(cases[:2], out)[0] == 1.0


def test_graded_entries():
    assert {g.name: g.points for g in nb12.GRADED} == {"my_schedule": 2, "to_torch_csv": 1, "choose_design": 3}
