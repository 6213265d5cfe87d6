"""Notebook 03 (GPipe as data): checks and graded score of ``gpipe_schedule``.

``gpipe_schedule(P, M)`` returns GPipe (fill-drain) as action lists: entry r is rank r's list, each action a
``labs.Action`` or a string such as ``"2F5"``. Rank r owns stage r: it runs the forwards of every micro-batch, then
their backwards. Checked: it parses; it has P lists; every rank runs exactly its own stage's F and B of every
micro-batch; ``labs.validate`` accepts it; and its simulated step time equals ``labs.gpipe``'s. The visible check and
the graded score then run it for real on small pipelines (gradients equal to one process's). Graded: the kernel
returns the schedules as strings; the grader checks them and makes the real run in its own process. Calling
``labs.gpipe`` is not an answer.
"""
from __future__ import annotations

from collections import Counter

from labs.exercises._common import check, exercise, score_cases, special
from labs.grading import Graded
from labs.launch import LaunchTimeout, RankFailed
from labs.pipeline import run_pipeline
from labs.schedules import ScheduleError, gpipe, parse, validate
from labs.simulate import Costs, simulate

COSTS = (Costs(1.0, 2.0), Costs([1.0, 2.0, 1.5, 1.0, 3.0, 1.0], [2.0, 1.0, 3.0, 2.0, 1.0, 2.5]))
GRAD_TOLERANCE = 1e-5
REFERENCE = "labs.schedules.gpipe"
REAL_CASE = (4, 3)


def _show(actions) -> str:
    return ", ".join(str(a) for a in actions)


@exercise("gpipe_schedule")
def schedule_problem(case, value) -> str | None:
    """What is wrong with ``value`` (what gpipe_schedule(P, M) returned) as GPipe, naming the rank and the action."""
    P, M = case
    where = f"gpipe_schedule({P}, {M})"
    try:
        schedule = parse(value)
    except ScheduleError as error:
        return f"{where}: {error}"
    want = gpipe(P, M)
    if len(schedule) != P:
        return f"{where} returned {len(schedule)} lists; expected {P}, one per rank"
    for rank, (mine, ref) in enumerate(zip(schedule, want)):
        extra = Counter(mine) - Counter(ref)
        missing = Counter(ref) - Counter(mine)
        if extra or missing:
            parts = []
            if missing:
                parts.append(f"is missing {_show(sorted(missing.elements()))}")
            if extra:
                twice = [a for a in extra if a in Counter(ref)]
                foreign = [a for a in extra if a not in Counter(ref)]
                if twice:
                    parts.append(f"runs {_show(sorted(twice))} more than once")
                if foreign:
                    parts.append(f"runs {_show(sorted(foreign))}, which rank {rank} does not own "
                                 f"(rank r runs stage r only)")
            return f"{where}: rank {rank} " + " and ".join(parts)
    try:
        validate(schedule)
    except ScheduleError as error:
        return f"{where} does not validate: {error}"
    for costs, label in zip(COSTS, ("equal stages, F=1, B=2", "unequal stage costs")):
        if P > 6 and isinstance(costs.forward, list):
            continue
        mine_t, ref_t = simulate(schedule, costs).step_time, simulate(want, costs).step_time
        if abs(mine_t - ref_t) > 1e-9 * ref_t:
            rank, i = next((r, i) for r in range(P) for i in range(len(want[r])) if schedule[r][i] != want[r][i])
            return (f"{where}: valid, but its simulated step ({label}) takes {mine_t:g} time units where GPipe takes "
                    f"{ref_t:g}; "
                    f"first difference: rank {rank}, position {i}: you run {schedule[rank][i]}, GPipe runs "
                    f"{want[rank][i]} (all forwards first, then the backwards)")
    return None


def real_run_problem(value, P: int, M: int) -> str | None:
    """Run ``value`` (gpipe_schedule(P, M)'s schedule) for real on P ranks (paced, small); compare the gradients."""
    try:
        run = run_pipeline(parse(value), layers=P, batch_size=8 * M, pace_ms=(2, 4), warmup_steps=0, timeout=30)
    except (RankFailed, LaunchTimeout, ScheduleError) as error:
        return f"the real run of gpipe_schedule({P}, {M}) failed: {error}"
    if run.max_grad_error > GRAD_TOLERANCE:
        return f"the real run of gpipe_schedule({P}, {M}) gave gradients off by {run.max_grad_error:.2e}"
    if run.trace.peak_activations != [M] * P:
        return (f"the real run of gpipe_schedule({P}, {M}) held {run.trace.peak_activations} micro-batches "
                f"of activations per rank at the peak; GPipe holds M={M} on every rank")
    return None


def check_gpipe_schedule(fn) -> bool:
    cases = [(2, 3), (3, 2), (4, 4), (4, 8), (2, 1)]
    if not check(fn, cases, schedule_problem, "gpipe_schedule", "labs.gpipe", forbidden=(REFERENCE,),
                 passed=f"gpipe_schedule: {len(cases)} cases valid, same actions per rank and same simulated step "
                        f"time as labs.gpipe -> correct"):
        return False
    problem = real_run_problem(fn(2, 3), 2, 3)
    if problem:
        print(problem)
        return False
    print("gpipe_schedule(2, 3) run for real on 2 ranks: gradients equal one process's, 3 activations held "
          "per rank -> correct")
    return True


def _cases(rng) -> list[tuple]:
    return [(P, M) for P in range(1, 9) for M in (1, 2, 3, 4, 5, 8, 12)]


def score(cases, outputs) -> tuple[float, str]:
    """Three quarters for the schedules (validator, simulator, per-rank actions), one quarter for a real run."""
    offline, message = score_cases(cases, outputs, schedule_problem)
    return real_run_score(cases, outputs, offline, message, REAL_CASE, schedule_problem, real_run_problem)


def real_run_score(cases, outputs, offline: float, message: str, real_case, problem, real_problem):
    """(0.75 * offline + 0.25 * the real run of ``real_case``'s schedule, message); no run if that schedule is wrong."""
    output = outputs[cases.index(real_case)]
    try:
        wrong = special("", output) or problem(real_case, output)
    except Exception as error:  # noqa: BLE001 - an output of an unexpected shape
        wrong = str(error)
    if wrong:
        return 0.75 * offline, f"{message}\nno real run: the schedule for {real_case} is wrong"
    trouble = real_run_problem(output, *real_case) if real_problem is None else real_problem(output, *real_case)
    if trouble:
        return 0.75 * offline, f"{message}\n{trouble}"
    return 0.75 * offline + 0.25, f"{message}; the real run of {real_case} on processes matches one process"


GRADED = [Graded(name="gpipe_schedule", points=3, cases=_cases, score=score, forbidden=(REFERENCE,))]
