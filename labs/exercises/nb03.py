"""Notebook 03 (GPipe as data): checks and graded tests of ``stuck_at`` and ``gpipe_step_time``.

* ``stuck_at(schedule)``: the deadlock finder. ``schedule`` is a list per rank of action strings (``"1F0"``). Walk the
  lists the way the ranks would (an action runs once every action it depends on has run, see
  ``labs.schedules.dependencies``) until nothing more can run. Return None when every action ran, otherwise one entry
  per rank: the string of the action that rank waits on forever, or None for a rank that finished its list.
* ``gpipe_step_time(forward, backward, M)``: the step time of GPipe with per-stage costs (lists, one number per
  stage, rank r running stage r) and a free link. One slow stage sets the pace of the whole pipeline:
  sum(F) + (M-1)*max(F) + sum(B) + (M-1)*max(B). Compared with ``labs.simulate``; the notebook then measures it on
  real ranks with an unbalanced cut.

The visible checks say when the learner's function calls the reference it is asked to replace.
"""
from __future__ import annotations

import random
import sys

import labs
from labs.exercises._common import Answer, collect, report
from labs.exercises.nb02 import watching
from labs.grading import Graded
from labs.schedules import ScheduleError, dependencies, gpipe, one_f_one_b, parse, validate
from labs.simulate import Costs, simulate

_SCHEDULES = sys.modules["labs.schedules"]
REFERENCE_VALIDATE = ((labs, "validate"), (_SCHEDULES, "validate"))
REFERENCE_SIMULATE = ((labs, "simulate"), (sys.modules["labs.simulate"], "simulate"))


# --- the deadlock finder ------------------------------------------------------------------------------------------

def reference_stuck_at(schedule):
    """The walk: run every action whose inputs exist, until nothing moves; where each rank stopped (or None)."""
    actions = parse(schedule)
    stages = 1 + max(a.stage for acts in actions for a in acts)
    done, cursor, moved = set(), [0] * len(actions), True
    while moved:
        moved = False
        for rank, acts in enumerate(actions):
            while cursor[rank] < len(acts) and all(d in done for d in dependencies(acts[cursor[rank]], stages)):
                done.add(acts[cursor[rank]])
                cursor[rank] += 1
                moved = True
    if all(c == len(acts) for c, acts in zip(cursor, actions)):
        return None
    return [str(acts[c]) if c < len(acts) else None for c, acts in zip(cursor, actions)]


def shuffled(rng: random.Random, schedule, swaps: int):
    """A copy of ``schedule`` (as strings) with ``swaps`` random swaps of two actions inside one rank's list."""
    lists = [[str(a) for a in acts] for acts in parse(schedule)]
    for _ in range(swaps):
        acts = lists[rng.randrange(len(lists))]
        if len(acts) > 1:
            i, j = rng.sample(range(len(acts)), 2)
            acts[i], acts[j] = acts[j], acts[i]
    return lists


def stuck_problem(fn, schedule, label: str) -> str | None:
    want = reference_stuck_at(schedule)
    answer = Answer(fn, f"{fn.__name__}({label})", schedule)
    if answer.problem:
        return answer.problem
    got = answer.value
    if got is not None and not isinstance(got, (list, tuple)):
        return f"{fn.__name__}({label}) returned {got!r}; expected None or one entry per rank"
    normal = None if got is None else [None if a is None else str(a) for a in got]
    if normal == want:
        return None
    if want is None:
        return f"{fn.__name__}({label}) returned {normal}, but every action of this schedule can run: expected None"
    if normal is None:
        return (f"{fn.__name__}({label}) returned None, but the ranks get stuck at {want} "
                f"(rank r's entry: the action it waits on forever; None for a rank that finished)")
    return f"{fn.__name__}({label}) returned {normal}; expected {want}"


def _visible_stuck_cases():
    deadlock = [["0F0", "0B0", "0F1", "0B1"], ["1F0", "1F1", "1B0", "1B1"]]
    b_first = [[str(a) for a in acts] for acts in gpipe(3, 2)]
    b_first[1] = ["1B0"] + [a for a in b_first[1] if a != "1B0"]
    cycle3 = [["0F0", "0B0", "0F1", "0B1"], ["1F0", "1F1", "1B0", "1B1"], ["2F0", "2F1", "2B0", "2B1"]]
    rng = random.Random(3)
    cases = [(deadlock, "the cross-rank deadlock above"), ([[str(a) for a in acts] for acts in gpipe(4, 4)], "GPipe(4, 4)"),
             ([[str(a) for a in acts] for acts in one_f_one_b(4, 6)], "1F1B(4, 6)"),
             (b_first, "GPipe(3, 2) with rank 1 starting on 1B0"), (cycle3, "three ranks, rank 0 backward-first")]
    cases += [(shuffled(rng, gpipe(3, 3), 2), f"a shuffled GPipe(3, 3), #{i}") for i in range(5)]
    return cases


def check_stuck_at(fn) -> bool:
    cases = _visible_stuck_cases()
    with watching(REFERENCE_VALIDATE + REFERENCE_SIMULATE) as called:
        problems = collect(lambda s, label: stuck_problem(fn, s, label), cases, "stuck_at", "labs.validate")
    if problems is None:
        return False
    if called:
        print(f"stuck_at calls {called[0]}, which does the walk this exercise asks you to write: walk the lists "
              f"yourself (carrying on with the reference)")
        return False
    ok = report(problems, f"stuck_at: {len(cases)} schedules (2 valid, 3 broken by hand, 5 shuffled at random) -> correct",
                shown=1)
    if not ok:
        print("(carrying on with the reference)")
    return ok


# --- the unbalanced stage -----------------------------------------------------------------------------------------

def simulated_gpipe_step(forward, backward, M: int) -> float:
    return simulate(gpipe(len(forward), M), Costs(list(forward), list(backward))).step_time


def step_problem(fn, forward, backward, M: int) -> str | None:
    where = f"{fn.__name__}({forward}, {backward}, {M})"
    answer = Answer(fn, where, list(forward), list(backward), M)
    if answer.problem:
        return answer.problem
    try:
        got = float(answer.value)
    except (TypeError, ValueError):
        return f"{where} returned {answer.value!r}, expected a number"
    want = simulated_gpipe_step(forward, backward, M)
    if abs(got - want) <= 1e-9 * max(1.0, want):
        return None
    P = len(forward)
    balanced_guess = (M + P - 1) * (sum(forward) + sum(backward)) / P
    hint = ""
    if abs(got - balanced_guess) <= 1e-9 * max(1.0, want):
        hint = " - that is (M+P-1) times the *average* stage: with unequal stages the slowest one sets the pace"
    elif abs(got - (M + P - 1) * (max(forward) + max(backward))) <= 1e-9 * max(1.0, want):
        hint = " - that prices every slot of the fill and drain at the slowest stage; only the M-1 repeats wait on it"
    return f"{where} returned {got:.6g}; the simulated GPipe step takes {want:.6g}{hint}"


VISIBLE_COSTS = [([1.0] * 4, [2.0] * 4, 8), ([1.5, 1.0, 1.0, 1.0], [3.0, 2.0, 2.0, 2.0], 8),
                 ([1.0, 1.0, 3.0], [2.0, 1.0, 2.0], 5), ([1.0, 2.0], [4.0, 1.0], 3), ([2.0], [3.0], 4)]


def check_gpipe_step_time(fn) -> bool:
    with watching(REFERENCE_SIMULATE) as called:
        problems = collect(lambda f, b, M: step_problem(fn, f, b, M), VISIBLE_COSTS, "gpipe_step_time",
                           "labs.simulate")
    if problems is None:
        return False
    if called:
        print(f"gpipe_step_time calls {called[0]}: predict the step from the costs instead (carrying on with the "
              f"reference)")
        return False
    ok = report(problems, f"gpipe_step_time: {len(VISIBLE_COSTS)} cost models (balanced, one slow stage, slow "
                          f"forward and slow backward on different stages) match the simulated step -> correct",
                shown=1)
    if not ok:
        print("(carrying on with the reference)")
    return ok


def reference_gpipe_step_time(forward, backward, M: int) -> float:
    """The simulated step of GPipe with these per-stage costs and a free link."""
    return simulated_gpipe_step(forward, backward, M)


def _graded_stuck_at(fn) -> None:
    rng = random.Random(11)
    for P in (2, 3, 4, 5):
        for M in (1, 2, 3, 5):
            for base in (gpipe(P, M), one_f_one_b(P, M)):
                for swaps in (0, 1, 3):
                    schedule = shuffled(rng, base, swaps)
                    problem = stuck_problem(fn, schedule, f"{P} ranks, {M} micro-batches, {swaps} swaps: {schedule}")
                    assert problem is None, problem


def _graded_gpipe_step_time(fn) -> None:
    rng = random.Random(5)
    for P in (1, 2, 3, 4, 6):
        for M in (1, 2, 4, 7):
            forward = [rng.choice([1.0, 1.5, 2.0, 3.0]) for _ in range(P)]
            backward = [rng.choice([1.0, 2.0, 2.5, 4.0]) for _ in range(P)]
            problem = step_problem(fn, forward, backward, M)
            assert problem is None, problem


GRADED = [Graded(name="stuck_at", points=2, test=_graded_stuck_at),
          Graded(name="gpipe_step_time", points=2, test=_graded_gpipe_step_time)]
