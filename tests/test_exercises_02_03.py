"""The graded scores of notebooks 02 and 03 (no kernel, no process): right answers score 1, constant or reference
answers 0, partly right ones in between, and the messages name the most instructive failing case."""
from __future__ import annotations

import random

import math

import pytest

from labs.exercises import nb02, nb03, verdicts02
from labs.grading import plain


def _graded(module, name):
    return next(g for g in module.GRADED if g.name == name)


def _score(module, name, fn, seed=1):
    graded = _graded(module, name)
    cases = graded.cases(random.Random(seed))
    return graded.score(cases, [plain(fn(*case)) for case in cases])


def right_step(forward, backward, M):
    return sum(forward) + sum(backward) + (M - 1) * (max(forward) + max(backward))


def right_m(P, target, forward, backward, link):
    """The closed form notebook 02 reveals after the check: step = (M+P-1)(F+B) + 2(P-1) link."""
    boundary = (P - 1) * (forward + backward + 2 * link) * (1 - target) / (target * (forward + backward))
    return max(1, math.ceil(boundary - 1e-9))


def test_right_answers_score_full_marks():
    assert _score(nb02, "idle_fraction", lambda P, M: (P - 1) / (M + P - 1))[0] == 1.0
    for seed in (1, 2, 3):
        assert _score(nb02, "smallest_m", right_m, seed)[0] == 1.0
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
    assert _score(nb02, "smallest_m", lambda *case: 20)[0] == 0.0
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


@pytest.mark.parametrize("name", list(nb02.SMALLEST_M_WRONG))
def test_every_plausible_wrong_smallest_m_scores_far_below_full(name):
    """The link forgotten, paid one way or by every micro-batch, the seed's formula, B taken for F, one micro-batch
    too many or too few: each scores 0.3 or less on the hidden cases of several seeds (the quotas of
    ``smallest_m_cases`` leave each only the few cases where its mistake does not show)."""
    for seed in (1, 2, 3):
        fraction, message = _score(nb02, "smallest_m", nb02.SMALLEST_M_WRONG[name], seed)
        assert fraction <= 0.3, (name, seed, fraction, message)
    assert "the simulated step idles" in message or "fewer do" in message


def test_smallest_m_hidden_cases_are_not_the_notebooks_and_the_answer_is_the_simulators():
    for seed in range(6):
        cases = _graded(nb02, "smallest_m").cases(random.Random(seed))
        assert not set(cases) & set(nb02.SHOWN)
        assert sum(nb02.expected_m(*case) > 1 for case in cases) >= 14  # trivial cases: only the two planted
    rng = random.Random(7)
    for _ in range(40):  # the search decides: M meets the target in the simulator, M-1 does not
        P, target, F, B, link = case = nb02.draw_smallest_m_case(rng)
        M = nb02.expected_m(*case)
        assert nb02.simulated_link_idle(P, M, F, B, link) <= target < nb02.simulated_link_idle(P, M - 1, F, B, link)
        assert M == right_m(*case)  # and the closed form the notebook reveals agrees


def test_the_smallest_m_check_passes_the_right_answer_and_refuses_the_reference(capsys):
    assert nb02.check_smallest_m(right_m) is True
    assert "match a search on the simulator -> correct" in capsys.readouterr().out
    assert nb02.check_smallest_m(lambda P, t, F, B, link: right_m(P, t, F, B, 0)) is False  # the link forgotten
    assert "the simulated step idles" in capsys.readouterr().out
    assert nb02.check_smallest_m(lambda *case: nb02.expected_m(*case)) is False
    assert "just calls labs.exercises.nb02.expected_m" in capsys.readouterr().out
    from labs.timeline import Costs, simulate
    from labs.schedules import gpipe

    def brute(P, target, F, B, link):  # a search with the labs simulator: refused too
        return next(M for M in range(1, 500) if simulate(gpipe(P, M), Costs(F, B, link_s=link)).idle_fraction <= target)
    assert nb02.check_smallest_m(brute) is False
    assert "just calls labs.timeline.simulator.simulate" in capsys.readouterr().out


def test_the_link_closed_form_is_printed_only_after_the_check_passed(capsys):
    assert nb02.reveal_smallest_m(False) is False
    hidden = capsys.readouterr().out
    assert "2(P-1)" not in hidden and "once your smallest_m passes" in hidden
    nb02.reveal_smallest_m(True)
    assert "step = (M+P-1)(F+B) + 2(P-1)*link" in capsys.readouterr().out


def test_the_sweeps_replay_with_pauses_is_the_simulators_rule_and_reads_its_costs_back():
    """``verdicts02``: with no pause the replay equals the simulator with a link; a step planted with a fixed pause
    and message cost gives them back exactly (``step_costs``) and its idle share comes back to the formula."""
    from labs.schedules import gpipe
    from labs.timeline import Costs, simulate
    schedule = gpipe(4, 8)
    trace = simulate(schedule, Costs(0.02, 0.04, link_s=0.001))
    durations = {e.action: e.duration_s for events in trace.events for e in events}
    assert verdicts02.replay_paused(schedule, durations, 0.0, 0.001) == pytest.approx(trace.step_time_s)
    run = verdicts02._planted(8)
    planted = verdicts02._walk(schedule, {a: d + 0.0006 for a, d in durations.items()}, 0.002, 0.001)
    step = run.step_traces[0]
    for rank, events in enumerate(step.events):
        for e, a in zip(events, schedule[rank]):
            e.start_s, e.end_s = planted[a]
        step.ranks[rank].finish_s = events[-1].end_s
    assert verdicts02.step_costs(run) == pytest.approx({"pause_s": 0.002, "message_s": 0.001})
    assert step.idle_fraction - verdicts02.explained_idle(run) == pytest.approx(3 / 11, abs=1e-9)
    assert step.idle_fraction - 3 / 11 > 0.02  # what the measured costs explain


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
    control: the solved notebooks 02 and 03 do print "your ..." and their closed forms."""
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
                                                 and "once your" not in line) or "max F + max B" in line or "2(P-1)*link" in line]

    for path in STUDENT_00_03:
        assert offending(path) == [], path
    assert offending("solutions/03_gpipe.ipynb")  # the solved notebook credits the learner and reveals the form
    assert any("2(P-1)*link" in line for line in offending("solutions/02_microbatching.ipynb"))
