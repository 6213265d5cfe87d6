"""The graded scores of notebooks 02 and 03 (no kernel, no process): right answers score 1, constant or reference
answers 0, partly right ones in between, and the messages name the most instructive failing case."""
from __future__ import annotations

import random

from labs.exercises import nb02, nb03
from labs.grading import plain


def _graded(module, name):
    return next(g for g in module.GRADED if g.name == name)


def _score(module, name, fn, seed=1):
    graded = _graded(module, name)
    cases = graded.cases(random.Random(seed))
    return graded.score(cases, [plain(fn(*case)) for case in cases])


def right_step(forward, backward, M):
    return sum(forward) + sum(backward) + (M - 1) * (max(forward) + max(backward))


def right_events(events, step_time):
    return 1 - sum(end - start for pairs in events for start, end in pairs) / (len(events) * step_time)


def test_right_answers_score_full_marks():
    assert _score(nb02, "idle_fraction", lambda P, M: (P - 1) / (M + P - 1))[0] == 1.0
    assert _score(nb02, "idle_from_events", right_events)[0] == 1.0
    assert _score(nb03, "stuck_at", nb03.reference_stuck_at)[0] == 1.0
    assert _score(nb03, "gpipe_step_time", right_step)[0] == 1.0


def test_the_closed_form_step_equals_the_simulator_on_random_costs():
    rng = random.Random(0)
    for _ in range(200):
        P, M = rng.randint(1, 6), rng.randint(1, 9)
        forward = [rng.uniform(0.5, 3) for _ in range(P)]
        backward = [rng.uniform(0.5, 4) for _ in range(P)]
        assert abs(right_step(forward, backward, M) - nb03.simulated_gpipe_step(forward, backward, M)) < 1e-9


def test_constant_answers_score_zero():
    assert _score(nb02, "idle_fraction", lambda P, M: 0.25)[0] < 0.05
    assert _score(nb02, "idle_from_events", lambda events, step: 0.5)[0] == 0.0
    assert _score(nb03, "stuck_at", lambda schedule: None)[0] == 0.0          # "it always finishes"
    assert _score(nb03, "stuck_at", lambda schedule: ["0F0"])[0] == 0.0       # "it always gets stuck"


def test_the_overhead_formula_is_not_the_idle_fraction_and_says_why():
    fraction, message = _score(nb02, "idle_fraction", lambda P, M: (P - 1) / M)
    assert fraction < 0.2 and "(P-1)/M" in message and "idle_fraction(1," not in message.split("\n")[0]


def test_near_misses_of_the_step_time_earn_nothing_beyond_the_trivial_cases_and_say_why():
    """The balanced guess and 'every slot at the slowest stage' are right only with one rank (a trivial case), the
    naive sum only at M = 1 (declared): each scores 0, and the balanced guess is told that the slowest stage sets the
    pace. Negative control: a function right everywhere but on the one-rank cases loses one case per such case."""
    for name, wrong in nb03.STEP_WRONG.items():
        fraction, message = _score(nb03, "gpipe_step_time", wrong)
        assert fraction == 0.0, (name, fraction)
    assert "slowest one sets the pace" in _score(nb03, "gpipe_step_time", nb03.STEP_WRONG[
        "(M+P-1) times the average stage"])[1]
    assert _score(nb03, "gpipe_step_time", lambda f, b, M: sum(f) + sum(b))[0] == 0.0
    slip = _score(nb03, "gpipe_step_time", lambda f, b, M: right_step(f, b, M) + (len(f) == 1))[0]
    assert 0.5 < slip < 1.0


def test_the_closed_form_is_printed_only_after_the_check_passed(capsys):
    assert nb03.reveal_step_time(False) is False
    hidden = capsys.readouterr().out
    assert "max F" not in hidden and "once your gpipe_step_time passes" in hidden
    nb03.reveal_step_time(True)
    assert "(M-1)(max F + max B)" in capsys.readouterr().out


def test_a_rank_without_events_is_idle_the_whole_step():
    def skips_empty(events, step):
        busy = [pairs for pairs in events if pairs]
        return right_events(busy, step) if busy else 1.0
    fraction, message = _score(nb02, "idle_from_events", skips_empty)
    assert 0 < fraction < 1 and "no events counts too" in message


def test_forbidden_and_failed_outputs_score_zero():
    graded = _graded(nb03, "stuck_at")
    cases = graded.cases(random.Random(3))
    assert graded.score(cases, [{"forbidden": "labs.schedules.validate"}] * len(cases))[0] == 0.0
    graded = _graded(nb02, "idle_fraction")
    cases = graded.cases(random.Random(3))
    fraction, message = graded.score(cases, [{"not_implemented": True}] * len(cases))
    assert fraction == 0.0 and "not implemented" in message
    assert nb02.IDLE_REFERENCE in graded.forbidden and nb03.VALIDATE_REFERENCE in _graded(nb03, "stuck_at").forbidden


def test_carry_on_names_whose_function_the_notebook_goes_on_with():
    from labs.exercises._carry_on import carry_on
    mine, reference = (lambda: "mine"), (lambda: "reference")
    assert carry_on(True, mine, reference, "stuck_at", "labs' reference walk") == (mine, "your stuck_at")
    fn, label = carry_on(False, mine, reference, "stuck_at", "labs' reference walk")
    assert fn is reference and label == "labs' reference walk (your stuck_at has not passed its check yet)"


STUDENT_00_03 = ["notebooks/00_ranks_and_messages.ipynb", "notebooks/01_naive_pipeline.ipynb",
                 "notebooks/02_microbatching.ipynb", "notebooks/03_gpipe.ipynb"]


def test_unsolved_notebooks_never_credit_the_reference_to_the_learner():
    """The student notebooks 00-03 are executed unsolved: every printed line that says "your" says that the check
    has not passed (the reference is speaking), and no closed form revealed after a check is printed. Negative
    control: the solved notebook 03 does print "your stuck_at" and the closed form."""
    import json
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def lines(path):
        with open(os.path.join(root, path), encoding="utf-8") as handle:
            cells = json.load(handle)["cells"]
        return [line for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
                for line in "".join(o["text"]).splitlines()]

    def offending(path):
        return [line for line in lines(path) if ("your " in line and "has not passed" not in line
                                                 and "once your" not in line) or "max F + max B" in line]

    for path in STUDENT_00_03:
        assert offending(path) == [], path
    assert offending("solutions/03_gpipe.ipynb")  # the solved notebook credits the learner and reveals the form
