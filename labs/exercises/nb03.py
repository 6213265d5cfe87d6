"""Notebook 03 (GPipe as data): checks and graded scores of ``stuck_at`` and ``gpipe_step_time``.

* ``stuck_at(schedule)``: the deadlock finder. ``schedule`` is a list per rank of action strings (``"1F0"``). Walk the
  lists the way the ranks would (an action runs once every action it depends on has run, see
  ``labs.schedules.dependencies``) until nothing more can run. Return None when every action ran, otherwise one entry
  per rank: the string of the action that rank waits on forever, or None for a rank that finished its list.
  Calling ``labs.validate`` (which does this walk) is not an answer.
* ``gpipe_step_time(forward, backward, M)``: the step time of GPipe with per-stage costs (lists, one number per
  stage, rank r running stage r) and a free link. One slow stage sets the pace of the whole pipeline. Judged against
  ``labs.simulate`` (which the learner may not call here), under the degenerate-answer rule: the naive sum of every
  stage's costs (right when M = 1) is declared, and a case on which both plausible mistakes below are right (one
  rank) earns nothing. The notebook then measures it on real ranks with an uneven cut, and prints the closed form
  only once the check has passed (``reveal_step_time``).

Graded: the kernel returns plain outputs for the grader's cases (random shuffles of GPipe and 1F1B schedules, random
stage costs); the grader recomputes every expected value with the walk below and the simulator. The notebook's
verdicts are registered at the end (``labs.course.verdicts``), each with a planted input that makes it False.
"""
from __future__ import annotations

import random

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, fraction_of_cases, score_cases, sort_case, special
from labs.grading import Graded
from labs.schedules import dependencies, gpipe, one_f_one_b, parse
from labs.timeline import Costs, simulate

__all__ = ["GRADED", "SIMULATE_REFERENCE", "STEP_CHECK_CASES", "STEP_WRONG", "VALIDATE_REFERENCE",
           "check_gpipe_step_time", "check_stuck_at", "idles_least", "ran_as_listed", "real_run_score",
           "reference_gpipe_step_time", "reference_stuck_at", "reveal_step_time", "shuffled", "simulated_gpipe_step",
           "step_cases", "step_problem", "step_score", "stuck_cases", "stuck_check_cases", "stuck_problem",
           "stuck_score"]

VALIDATE_REFERENCE = "labs.schedules.validation.validate"
SIMULATE_REFERENCE = "labs.timeline.simulator.simulate"


# ---------------------------------------------------------------- the deadlock finder
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


def shuffled(rng: random.Random, schedule, swaps: int) -> list[list[str]]:
    """``schedule`` as strings with ``swaps`` random swaps of two actions inside one rank's list."""
    lists = [[str(a) for a in acts] for acts in parse(schedule)]
    for _ in range(swaps):
        acts = lists[rng.randrange(len(lists))]
        if len(acts) > 1:
            i, j = rng.sample(range(len(acts)), 2)
            acts[i], acts[j] = acts[j], acts[i]
    return lists


def _stuck_where(case) -> str:
    return f"stuck_at({case[1] if len(case) > 1 else str(case[0])})"


def _stuck_key(case) -> tuple:
    """Ranks and actions per rank: what orders failing schedules (one rank or one micro-batch last)."""
    return len(case[0]), max(len(acts) for acts in case[0]) // 2


@exercise("stuck_at", where=_stuck_where, key=_stuck_key)
def stuck_problem(case, got):
    schedule = case[0]
    where = _stuck_where(case)
    message = special(where, got)
    if message:
        return message
    want = reference_stuck_at(schedule)
    if got is not None and not (isinstance(got, list) and all(a is None or isinstance(a, str) for a in got)):
        return f"{where} returned {str(got)[:200]}; expected None or one entry per rank (an action string or None)"
    if got == want:
        return None
    if want is None:
        return f"{where} returned {got}, but every action of this schedule can run: expected None"
    if got is None:
        return (f"{where} returned None, but the ranks get stuck at {want} (rank r's entry: the action it waits "
                f"on forever; None for a rank that finished)")
    return f"{where} returned {got}; expected {want}"


def stuck_check_cases() -> list[tuple]:
    deadlock = [["0F0", "0B0", "0F1", "0B1"], ["1F0", "1F1", "1B0", "1B1"]]
    b_first = [[str(a) for a in acts] for acts in gpipe(3, 2)]
    b_first[1] = ["1B0"] + [a for a in b_first[1] if a != "1B0"]
    cycle3 = [["0F0", "0B0", "0F1", "0B1"], ["1F0", "1F1", "1B0", "1B1"], ["2F0", "2F1", "2B0", "2B1"]]
    rng = random.Random(3)
    cases = [(deadlock, "the cross-rank deadlock above"),
             ([[str(a) for a in acts] for acts in gpipe(4, 4)], "GPipe(4, 4)"),
             ([[str(a) for a in acts] for acts in one_f_one_b(4, 6)], "1F1B(4, 6)"),
             (b_first, "GPipe(3, 2) with rank 1 starting on 1B0"), (cycle3, "three ranks, rank 0 backward-first")]
    cases += [(shuffled(rng, gpipe(3, 3), 2), f"a shuffled GPipe(3, 3), #{i + 1}") for i in range(5)]
    return cases


def check_stuck_at(fn) -> bool:
    cases = stuck_check_cases()
    return check(fn, cases, stuck_problem, "stuck_at", "labs.validate", forbidden=(VALIDATE_REFERENCE,),
                 call=lambda learner, schedule, _label: learner(schedule),
                 passed=f"stuck_at: {len(cases)} schedules (2 valid, 3 broken by hand, 5 shuffled at random) "
                        f"-> correct")


def stuck_cases(rng) -> list[tuple]:
    """Per shape: the generated schedule, one shuffle that still runs and two that get stuck (when they exist)."""
    cases = []
    for P in (2, 3, 4, 5):
        for M in (1, 2, 3, 5):
            for make in (gpipe, one_f_one_b):
                base = [[str(a) for a in acts] for acts in make(P, M)]
                cases.append((base,))
                runs, stuck = [], []
                for _ in range(60):
                    candidate = shuffled(rng, base, rng.randint(1, 3))
                    if candidate == base:
                        continue
                    (runs if reference_stuck_at(candidate) is None else stuck).append(candidate)
                    if len(runs) >= 1 and len(stuck) >= 2:
                        break
                cases += [(c,) for c in runs[:1] + stuck[:2]]
    return cases


def stuck_score(cases, outputs):
    """The share right among schedules that finish times the share right among those that get stuck: answering
    None (or "stuck") for everything scores 0, a walk that misnames some stuck actions keeps partial credit."""
    finishing = [i for i, case in enumerate(cases) if reference_stuck_at(case[0]) is None]
    stuck = [i for i in range(len(cases)) if i not in set(finishing)]
    problems = {i: (sort_case(stuck_problem, case), p) for i, (case, output) in enumerate(zip(cases, outputs))
                if (p := stuck_problem(case, output))}
    share = [(len(group) - sum(i in problems for i in group)) / len(group) if group else 1.0
             for group in (finishing, stuck)]
    _, message = fraction_of_cases(list(problems.values()), len(cases), "schedules")
    return share[0] * share[1], (f"{message} ({len(finishing)} schedules finish, {len(stuck)} get stuck; "
                                 f"score = share right of each, multiplied)")


# ---------------------------------------------------------------- one slow stage
def simulated_gpipe_step(forward, backward, M: int) -> float:
    """The simulated step of GPipe with these per-stage costs and a free link."""
    return simulate(gpipe(len(forward), M), Costs(list(forward), list(backward))).step_time_s


reference_gpipe_step_time = simulated_gpipe_step


def _step_key(case) -> tuple:
    return len(case[0]), case[2]  # (P, M)


# Plausible mistakes (a case on which both are right, one rank, earns nothing) and the declared degenerate answer.
STEP_WRONG = {"(M+P-1) times the average stage": lambda f, b, M: (M + len(f) - 1) * (sum(f) + sum(b)) / len(f),
              "every slot at the slowest stage": lambda f, b, M: (M + len(f) - 1) * (max(f) + max(b))}


def _naive_sum(case) -> list:
    """Every stage's forward and backward once, M ignored: right only when M = 1."""
    forward, backward, _ = case
    return [sum(forward) + sum(backward)]


@exercise("gpipe_step_time", key=_step_key, trivial=_naive_sum, wrong=STEP_WRONG)
def step_problem(case, got):
    forward, backward, M = case
    where = f"gpipe_step_time({forward}, {backward}, {M})"
    message = special(where, got)
    if message:
        return message
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"{where} returned {got!r}, expected a number"
    want = simulated_gpipe_step(forward, backward, M)
    if abs(got - want) <= 1e-9 * max(1.0, want):
        return None
    P = len(forward)
    hint = ""
    if abs(got - (M + P - 1) * (sum(forward) + sum(backward)) / P) <= 1e-9 * max(1.0, want):
        hint = " - that is (M+P-1) times the *average* stage: with unequal stages the slowest one sets the pace"
    elif abs(got - (M + P - 1) * (max(forward) + max(backward))) <= 1e-9 * max(1.0, want):
        hint = " - that prices every slot of the fill and drain at the slowest stage; only the M-1 repeats wait on it"
    return f"{where} returned {got:.6g}; the simulated GPipe step takes {want:.6g}{hint}"


STEP_CHECK_CASES = [([1.0] * 4, [2.0] * 4, 8), ([1.5, 1.0, 1.0, 1.0], [3.0, 2.0, 2.0, 2.0], 8),
                    ([1.0, 1.0, 3.0], [2.0, 1.0, 2.0], 5), ([1.0, 2.0], [4.0, 1.0], 3), ([2.0], [3.0], 4)]


def check_gpipe_step_time(fn) -> bool:
    return check(fn, STEP_CHECK_CASES, step_problem, "gpipe_step_time", "labs.simulate",
                 forbidden=(SIMULATE_REFERENCE,),
                 passed=f"gpipe_step_time: {len(STEP_CHECK_CASES)} cost models (balanced, one slow stage, "
                        f"slow forward and slow backward on different stages) match the simulated step -> correct")


def step_cases(rng) -> list[tuple]:
    cases = []
    for P in (1, 2, 3, 4, 6):
        for M in (1, 2, 4, 7):
            cases.append(([rng.choice([1.0, 1.5, 2.0, 3.0]) for _ in range(P)],
                          [rng.choice([1.0, 2.0, 2.5, 4.0]) for _ in range(P)], M))
    return cases


def step_score(cases, outputs):
    return score_cases(cases, outputs, step_problem)


def reveal_step_time(ok: bool) -> bool:
    """After the check: the closed form and what one extra layer costs, printed only when ``gpipe_step_time``
    passed (the student notebook is executed unsolved, so an unconditional print would give the answer away)."""
    from labs.exercises._carry_on import reveal
    return reveal(ok, "The closed form: step = sum(F) + sum(B) + (M-1)(max F + max B). The first micro-batch crosses "
                      "every stage once each way;\nthe other M-1 leave at the pace of the slowest stage. With 9 "
                      "layers, stage 0's extra layer adds M(20 + 40) ms = 240 ms at M=4,\nall of it to the step: "
                      "(M+P-1)*120 = 840 ms with 8 layers, 1080 ms with 9.", "gpipe_step_time")


# ---------------------------------------------------------------- shared with notebook 04's score
def real_run_score(cases, outputs, offline: float, message: str, real_case, problem, real_problem):
    """(0.75 * offline + 0.25 * the real run of ``real_case``'s schedule, message); no run if that schedule is wrong.

    ``problem(case, output)`` judges the schedule offline; ``real_problem(output, *real_case)`` runs it for real.
    (Notebook 03's own exercises no longer run schedules; notebook 04's score uses this.)
    """
    output = outputs[cases.index(real_case)]
    try:
        wrong = special("", output) or problem(real_case, output)
    except Exception as error:  # noqa: BLE001 - an output of an unexpected shape
        wrong = str(error)
    if wrong:
        return 0.75 * offline, f"{message}\nno real run: the schedule for {real_case} is wrong"
    trouble = real_problem(output, *real_case)
    if trouble:
        return 0.75 * offline, f"{message}\n{trouble}"
    return 0.75 * offline + 0.25, f"{message}; the real run of {real_case} on processes matches one process"


GRADED = [Graded(name="stuck_at", points=2, cases=stuck_cases, score=stuck_score, forbidden=(VALIDATE_REFERENCE,)),
          Graded(name="gpipe_step_time", points=2, cases=step_cases, score=step_score,
                 forbidden=(SIMULATE_REFERENCE,))]


# ---------------------------------------------------------------- the notebook's verdicts
@verdict(holds=[case([["0F0", "0B0"], ["1F0", "1B0"]], [["0F0", "0B0"], ["1F0", "1B0"]])],
         fails=[case([["0F0", "0B0"], ["1B0", "1F0"]], [["0F0", "0B0"], ["1F0", "1B0"]],
                     why="rank 1 ran its two actions swapped"),
                case([["0F0", "0B0"]], [["0F0", "0B0"], ["1F0", "1B0"]], why="a rank that sent back no trace")])
def ran_as_listed(ran, schedule) -> bool:
    """Every rank ran exactly its list, in order (``ran[r]``: the actions of rank r's trace, as strings)."""
    return [[str(a) for a in r] for r in ran] == [[str(a) for a in r] for r in schedule]


@verdict(holds=[case([0.337, 0.556, 0.555, 0.555], 0, 0.1)],
         fails=[case([0.50, 0.50, 0.50, 0.50], 0, 0.1, why="a balanced cut: every rank idles alike"),
                case([0.556, 0.337, 0.555, 0.555], 0, 0.1, why="the slow stage on rank 1, not rank 0")])
def idles_least(idle_fractions, rank: int, margin: float) -> bool:
    """``rank`` idles at least ``margin`` less (a share of the step) than every other rank."""
    others = [f for r, f in enumerate(idle_fractions) if r != rank]
    return bool(others) and all(idle_fractions[rank] <= f - margin for f in others)
