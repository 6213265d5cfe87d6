"""Notebook 05 (interleaved 1F1B): checks and graded scores of ``chunk_owner`` and ``interleaved_schedule``.

* ``chunk_owner(stage, P)`` -> the rank that holds model stage ``stage`` when P ranks hold v chunks each, assigned
  round-robin (stage s on rank s mod P, so every micro-batch visits every rank v times).
* ``interleaved_schedule(P, M, v)`` -> the whole interleaved 1F1B schedule, one list of actions per rank (``Action``
  or strings such as ``"4F3"``: stage 4, forward, micro-batch 3). Megatron-LM's order: forwards go round in groups
  of P through chunk 0, 1, ..., v-1; backwards walk the chunks in reverse; rank r warms up with
  min(2(P-1-r) + (v-1)P, vM) forwards, then alternates one forward and one backward, then drains its backwards.
  Judged by what it does: the validator must accept it, stage s must sit on rank s mod P, the simulator must give
  the step time and peak activations of ``labs.interleaved`` (forward 1, backward 2), and a real run on processes
  must give the one-process gradients with those peak activations.

Graded: the kernel returns the learner's values as plain data (schedules as strings); the grader checks them and
makes the real run in its own process. Calling ``labs.interleaved`` (or ``labs.make``, which calls it) is not an answer.
"""
from __future__ import annotations

from labs.exercises._common import check, exercise, score_cases
from labs.exercises.nb03 import real_run_score
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, RankFailed
from labs.pipeline import run_pipeline
from labs.schedules import ScheduleError, interleaved, parse, validate
from labs.timeline import Costs, simulate

__all__ = ["COSTS", "GRADED", "REAL_CASE", "SCHEDULE_REFERENCES", "TOLERANCE", "check_chunk_owner",
           "check_interleaved_schedule", "owner_problem", "real_problem", "schedule_problem", "warmup"]

COSTS = Costs(forward_s=1.0, backward_s=2.0)
TOLERANCE = 1e-5
SCHEDULE_REFERENCES = ("labs.schedules.classic.interleaved",)
REAL_CASE = (4, 8, 2)


def warmup(P: int, M: int, v: int, rank: int) -> int:
    """Megatron-LM's warm-up forwards on ``rank``: min(2(P-1-r) + (v-1)P, vM)."""
    return min(2 * (P - 1 - rank) + (v - 1) * P, v * M)



@exercise("chunk_owner")
def owner_problem(case, got) -> str | None:
    stage, P = case
    if got != stage % P or isinstance(got, bool):
        return f"chunk_owner({stage}, {P}) returned {got!r}, expected {stage % P}"
    return None


def check_chunk_owner(fn) -> bool:
    cases = [(s, 4) for s in range(8)] + [(5, 2)]
    ok = check(fn, cases, owner_problem, "chunk_owner", "stage % P")
    if ok:
        print(f"chunk_owner: stages 0-7 on P=4 go to ranks {[fn(s, 4) for s in range(8)]} -> correct")
    return ok


def _owner_cases(rng) -> list[tuple]:
    hidden = [(rng.randint(0, 10**6), rng.randint(2, 1000)) for _ in range(10)]
    return [(stage, P) for P in range(1, 9) for stage in range(4 * P)] + hidden


def _first_difference(schedule, reference, P: int, M: int, v: int) -> str:
    """Where the learner's lists first leave Megatron-LM's order (a hint; another order with the same timing passes)."""
    for rank, (mine, theirs) in enumerate(zip(schedule, reference)):
        for i, (got, want) in enumerate(zip(mine, theirs)):
            if got != want:
                return (f"rank {rank}'s action {i} is {got}, Megatron-LM's order has {want} there (it warms rank "
                        f"{rank} up with {warmup(P, M, v, rank)} forwards)")
    return "the lists agree with Megatron-LM's order where they overlap, but their lengths differ"


@exercise("interleaved_schedule")
def schedule_problem(case, value) -> str | None:
    """Validator + placement + simulator on ``value`` (what interleaved_schedule(P, M, v) returned)."""
    P, M, v = case
    where = f"interleaved_schedule({P}, {M}, {v})"
    try:
        schedule = validate(parse(value), M=M, num_stages=P * v, P=P)
    except ScheduleError as error:
        return f"{where}: the validator rejects it: {error}"
    for r, actions in enumerate(schedule):
        wrong = [a for a in actions if a.stage % P != r]
        if wrong:
            return (f"{where}: rank {r} runs {wrong[0]}, but stage {wrong[0].stage} lives on rank "
                    f"{wrong[0].stage % P} (stage s on rank s mod P)")
    reference = interleaved(P, M, v)
    trace, expected = simulate(schedule, COSTS), simulate(reference, COSTS)
    if abs(trace.step_time_s - expected.step_time_s) > 1e-9:
        return (f"{where}: simulated step time {trace.step_time_s:g} (forward 1, backward 2), expected "
                f"{expected.step_time_s:g}; {_first_difference(schedule, reference, P, M, v)}")
    if trace.peak_activations != expected.peak_activations:
        return (f"{where}: simulated peak activations per rank {trace.peak_activations}, expected "
                f"{expected.peak_activations}; {_first_difference(schedule, reference, P, M, v)}")
    return None


def real_problem(value, P: int, M: int, v: int) -> str | None:
    """Run the schedule on P processes (a model of P*v layers, one per stage) and compare with one process."""
    where = f"real run of interleaved_schedule({P}, {M}, {v})"
    try:
        run = run_pipeline(parse(value), P=P, M=M, layers=P * v, batch_size=4 * M, pace_ms=(1, 2),
                           warmup_steps=0, timeout_s=30)
    except (RankFailed, LaunchTimeout, ScheduleError) as error:
        return f"{where} failed: {str(error).strip().splitlines()[0]}"
    expected = simulate(interleaved(P, M, v), COSTS).peak_activations
    if run.max_grad_error > TOLERANCE:
        return f"{where}: gradients differ from one process by {run.max_grad_error:.1e}"
    if run.trace.peak_activations != expected:
        return f"{where}: measured peak activations {run.trace.peak_activations}, expected {expected}"
    return None


def check_interleaved_schedule(fn) -> bool:
    cases = [REAL_CASE, (2, 4, 3), (4, 4, 4), (3, 6, 2)]
    if not check(fn, cases, schedule_problem, "interleaved_schedule", "labs.interleaved",
                 forbidden=SCHEDULE_REFERENCES):
        return False
    problem = real_problem(fn(*REAL_CASE), *REAL_CASE)
    if problem:
        print(problem)
        return False
    peaks = simulate(interleaved(*REAL_CASE), COSTS).peak_activations
    print(f"interleaved_schedule: valid, stage s on rank s mod P, same simulated step time and peak activations as "
          f"Megatron-LM's order for (P, M, v) in {cases}; a real run at (P, M, v) = {REAL_CASE} on 4 processes "
          f"matches the one-process gradients and holds {peaks} chunk micro-batches -> correct")
    return True


def _schedule_cases(rng) -> list[tuple]:
    cases = [(P, k * P, v) for P in (1, 2, 3, 4) for v in (2, 3, 4) for k in (1, 2)]
    for _ in range(4):  # a few drawn at grading time
        P, v = rng.randint(2, 5), rng.randint(2, 4)
        cases.append((P, P * rng.randint(1, 3), v))
    return list(dict.fromkeys(cases))


def _schedule_score(cases, outputs) -> tuple[float, str]:
    """Three quarters for the schedules (validator, placement, simulator), one quarter for the real run."""
    offline, message = score_cases(cases, outputs, schedule_problem)
    return real_run_score(cases, outputs, offline, message, REAL_CASE, schedule_problem, real_problem)


GRADED = [Graded(name="chunk_owner", points=1, cases=_owner_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, owner_problem)),
          Graded(name="interleaved_schedule", points=3, cases=_schedule_cases, score=_schedule_score,
                 forbidden=SCHEDULE_REFERENCES)]
