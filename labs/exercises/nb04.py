"""Notebook 04 (1F1B): checks and graded score of ``one_f_one_b_schedule``.

``one_f_one_b_schedule(P, M)`` returns one list of actions per rank (``labs.Action`` or strings such as ``"2F5"``):
rank r runs min(P-1-r, M) warm-up forwards, then alternates one forward and one backward, then the remaining
backwards. It is judged by what it does, not by its text: the validator must accept it, the simulator must give the
same step time as ``labs.one_f_one_b`` (forward 1, backward 2) and peak activations min(P-r, M) on rank r, and a real
run on processes must give the one-process gradients with the same peak activations. Graded: the kernel returns the
schedules as strings; the grader checks them and makes the real runs in its own process. Calling
``labs.one_f_one_b`` is not an answer.
"""
from __future__ import annotations

from labs.exercises._common import check, exercise, one_stage_per_rank, real_run, score_cases
from labs.exercises.nb03 import real_run_score
from labs.grading import Graded
from labs.schedules import one_f_one_b
from labs.timeline import Costs, simulate

__all__ = ["COSTS", "GRADED", "REAL_CASES", "REFERENCE", "TOLERANCE", "check_one_f_one_b_schedule", "expected_peaks",
           "offline_problem", "real_problem", "score"]

COSTS = Costs(forward_s=1.0, backward_s=2.0)
TOLERANCE = 1e-5
REFERENCE = "labs.schedules.classic.one_f_one_b"
REAL_CASES = ((3, 6), (4, 3))


def expected_peaks(P: int, M: int) -> list[int]:
    return [min(P - r, M) for r in range(P)]


@exercise("one_f_one_b_schedule")
def offline_problem(case, value) -> str | None:
    """Validator + simulator on ``value`` (what one_f_one_b_schedule(P, M) returned): None if fine, else why."""
    P, M = case
    where = f"one_f_one_b_schedule({P}, {M})"
    schedule, problem = one_stage_per_rank(where, value, P, M)
    if problem:
        return problem
    trace = simulate(schedule, COSTS)
    reference = simulate(one_f_one_b(P, M), COSTS)
    if abs(trace.step_time_s - reference.step_time_s) > 1e-9:
        return (f"{where}: simulated step time {trace.step_time_s:g} (forward 1, backward 2), expected "
                f"{reference.step_time_s:g} as labs.one_f_one_b")
    if trace.peak_activations != expected_peaks(P, M):
        return (f"{where}: simulated peak activations per rank {trace.peak_activations}, expected "
                f"{expected_peaks(P, M)} (min(P-r, M))")
    return None


def real_problem(value, P: int, M: int) -> str | None:
    where = f"real run of one_f_one_b_schedule({P}, {M})"
    run, problem = real_run(where, value, P, M, pace_ms=(1, 2), tolerance=TOLERANCE)
    if problem:
        return problem
    if run.trace.peak_activations != expected_peaks(P, M):
        return (f"{where}: measured peak activations {run.trace.peak_activations}, expected "
                f"{expected_peaks(P, M)}")
    return None


def check_one_f_one_b_schedule(fn) -> bool:
    cases = [(4, 8), (4, 2), (3, 5)]
    if not check(fn, cases, offline_problem, "one_f_one_b_schedule", "labs.one_f_one_b", forbidden=(REFERENCE,)):
        return False
    problem = real_problem(fn(4, 4), 4, 4)
    if problem:
        print(problem)
        return False
    print(f"one_f_one_b_schedule: valid, same simulated step time as labs.one_f_one_b and peak activations "
          f"min(P-r, M) for (P, M) in {cases}; a real run at P=4, M=4 matches the one-process gradients and "
          f"holds {expected_peaks(4, 4)} micro-batches -> correct")
    return True


def _cases(rng) -> list[tuple]:
    cases = []
    for P in range(1, 7):
        for M in (1, 2, 3, P, P + 1, 2 * P, 9):
            if (P, M) not in cases:
                cases.append((P, M))
    return cases + [(rng.randint(7, 16), rng.randint(10, 40)) for _ in range(3)]


def score(cases, outputs) -> tuple[float, str]:
    """Three quarters for the schedules (validator, simulator), one quarter for the real runs (both must match)."""
    offline, message = score_cases(cases, outputs, offline_problem)
    fractions, messages = [], []
    for real_case in REAL_CASES:
        fraction, text = real_run_score(cases, outputs, offline, message, real_case, offline_problem, real_problem)
        fractions.append(fraction)
        messages.append(text[len(message):].lstrip("\n; "))
    return min(fractions), message + "\n" + "\n".join(messages)


GRADED = [Graded(name="one_f_one_b_schedule", points=3, cases=_cases, score=score, forbidden=(REFERENCE,))]
