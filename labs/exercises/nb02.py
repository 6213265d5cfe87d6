"""Notebook 02 (micro-batching): checks and graded scores of ``idle_fraction`` and ``idle_from_events``.

* ``idle_fraction(P, M)`` -> the share of a GPipe step the ranks sit idle, derived by counting slots (0.75 at
  P=4, M=1). Judged against the idle share of *simulated* GPipe timelines (several costs) and the closed form; calling ``labs.idle_fraction`` (the reference) is not an answer.
* ``idle_from_events(events, step_time_s)`` -> the idle share of a step read off a trace: ``events[r]`` is rank r's
  list of ``(start_s, end_s)`` pairs; the answer is 1 - (busy rank-time) / (P * step_time_s). Judged on synthetic
  traces (staggered ranks, gaps, a rank with no events) and, in the notebook, on the six real traces of the sweep.

Each exercise has one problem function (``idle_problem``, ``events_problem``: None or what is wrong) used by both the
visible check (``_common.check``, which judges the outputs after leaving the forbidden-reference guard, so a problem
may use any labs function) and the graded score.
"""
from __future__ import annotations

import random

from labs.exercises._common import check, exercise, score_cases, special
from labs.grading import Graded
from labs.schedules import gpipe
from labs.timeline import Costs, simulate

__all__ = ["GRADED", "IDLE_CHECK_CASES", "IDLE_REFERENCE", "IDLE_WRONG", "OVERHEAD_REFERENCE", "SIMULATED_COSTS",
           "TOLERANCE",
           "check_idle_fraction", "check_idle_from_events", "event_check_cases", "events_cases", "events_of",
           "events_problem", "events_score", "expected_idle", "idle_cases", "idle_problem", "idle_score",
           "simulated_idle", "synthetic_events"]

TOLERANCE = 1e-9
IDLE_REFERENCE = "labs.theory.idle_fraction"
OVERHEAD_REFERENCE = "labs.theory.bubble_overhead"  # gives the idle share too: idle = overhead / (1 + overhead)
SIMULATED_COSTS = [(1.0, 2.0), (2.0, 1.0), (1.0, 3.0)]


def _number(where: str, got):
    message = special(where, got)
    if message:
        return None, message
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return None, f"{where} returned {got!r}, expected a number"
    return float(got), None


# ---------------------------------------------------------------- idle_fraction
def simulated_idle(P: int, M: int, forward_s: float = 1.0, backward_s: float = 2.0) -> float:
    """The idle share of a simulated GPipe step on equal stages: what ``idle_fraction`` must predict."""
    return simulate(gpipe(P, M), Costs(forward_s, backward_s)).idle_fraction


# Plausible wrong answers, declared to the degenerate-answer rule (a case all of them get right earns nothing).
IDLE_WRONG = {"(P-1)/M, the bubble over the ideal time": lambda P, M: (P - 1) / M,
              "a percentage": lambda P, M: 100 * (P - 1) / (M + P - 1),
              "the busy share": lambda P, M: M / (M + P - 1),
              "(P-1)/(M+P), one slot too many": lambda P, M: (P - 1) / (M + P)}


@exercise("idle_fraction", wrong=IDLE_WRONG)
def idle_problem(case, got):
    P, M = case
    where = f"idle_fraction({P}, {M})"
    value, message = _number(where, got)
    if message:
        return message
    closed = (P - 1) / (M + P - 1)
    wants = [("the idle share of the step", closed)]
    if P * M <= 64:
        wants = [(f"the idle share of a simulated GPipe step (F={f:g}, B={b:g})", simulated_idle(P, M, f, b))
                 for f, b in SIMULATED_COSTS]
    for what, want in wants:
        if abs(value - want) > TOLERANCE * max(1.0, abs(want)):
            hint = ""
            if abs(value - 100 * want) <= 1e-6 * max(1.0, 100 * abs(want)):
                hint = " (return a ratio, not a percentage)"
            elif M and abs(value - (P - 1) / M) <= TOLERANCE:
                hint = (" - that is (P-1)/M, the bubble relative to the ideal time M(F+B), not a share of the step: "
                        "count the slots of the whole step")
            elif abs(value - (1 - want)) <= TOLERANCE:
                hint = " - that is the busy share; the idle share is what is left"
            return f"{where} returned {value:.6g}, expected {want:.6g} ({what}){hint}"
    return None


IDLE_CHECK_CASES = [(4, 8), (4, 16), (2, 3), (8, 32), (4, 1)]


def check_idle_fraction(fn) -> bool:
    return check(fn, IDLE_CHECK_CASES, idle_problem, "idle_fraction", "labs.idle_fraction",
                 forbidden=(IDLE_REFERENCE, OVERHEAD_REFERENCE),
                 passed=f"idle_fraction: {len(IDLE_CHECK_CASES)} cases match the idle share of simulated "
                        f"GPipe steps, e.g. P=4, M=8 -> 3/11 = 0.27 -> correct")


def idle_cases(rng) -> list[tuple]:
    grid = [(P, M) for P in range(1, 13) for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100)]
    return grid + [(rng.randint(2, 64), rng.randint(1, 512)) for _ in range(20)]


def idle_score(cases, outputs):
    return score_cases(cases, outputs, idle_problem)


# ---------------------------------------------------------------- idle_from_events
def events_of(trace) -> list[list[tuple[float, float]]]:
    """A trace's events as plain data: per rank, the (start_s, end_s) of each action."""
    return [[(e.start_s, e.end_s) for e in events] for events in trace.events]


def synthetic_events(rng: random.Random, ranks: int, actions: int, empty_rank: bool = False):
    """Per rank, ``actions`` non-overlapping (start, end) pairs at staggered random times; the step ends after the
    last of them (or a little later)."""
    events, latest = [], 0.0
    for rank in range(ranks):
        t, pairs = rng.uniform(0, 2), []
        for _ in range(0 if (empty_rank and rank == ranks - 1) else actions):
            t += rng.uniform(0, 1)
            duration = rng.uniform(0.1, 2)
            pairs.append([round(t, 6), round(t + duration, 6)])
            t += duration
        latest = max([latest] + [end for _, end in pairs])
        events.append(pairs)
    return events, round(latest + rng.uniform(0, 0.5), 6)


def expected_idle(events, step_time_s: float) -> float:
    busy = sum(end - start for pairs in events for start, end in pairs)
    return 1.0 - busy / (len(events) * step_time_s)


def _events_where(case) -> str:
    events, step_time_s = case[0], case[1]
    label = case[2] if len(case) > 2 else f"{len(events)} ranks, {sum(map(len, events))} events"
    return f"idle_from_events(<{label}>, {step_time_s:g})"


def _events_key(case) -> tuple:
    """Ranks and the most events on one rank: what orders failing traces (fewest ranks last)."""
    return len(case[0]), max((len(p) for p in case[0]), default=0)


@exercise("idle_from_events", where=_events_where, key=_events_key)
def events_problem(case, got):
    events, step_time_s = case[0], case[1]
    where = _events_where(case)
    value, message = _number(where, got)
    if message:
        return message
    want = expected_idle(events, step_time_s)
    if abs(value - want) <= TOLERANCE * max(1.0, abs(want)):
        return None
    hint = ""
    nonempty = [p for p in events if p]
    if abs(value - (1 - want)) <= TOLERANCE:
        hint = " - that is the busy share"
    elif len(nonempty) < len(events) and nonempty and abs(value - expected_idle(nonempty, step_time_s)) <= 1e-9:
        hint = " - a rank with no events counts too: it sits idle the whole step"
    return f"{where} returned {value:.6g}, expected {want:.6g}{hint}"


def event_check_cases(real_traces=()) -> list[tuple]:
    rng = random.Random(2)
    cases = [(*synthetic_events(rng, 4, 3), "4 ranks, 3 actions each, staggered"),
             (*synthetic_events(rng, 3, 5, empty_rank=True), "3 ranks, the last one with no events"),
             ([[[0.0, 1.0]], [[1.0, 2.0]]], 2.0, "2 ranks taking turns")]
    for trace in real_traces:
        cases.append((events_of(trace), trace.step_time_s,
                      f"the real GPipe trace with M={len(trace.events[0]) // 2}"))
    return cases


def check_idle_from_events(fn, real_traces=()) -> bool:
    cases = event_check_cases(real_traces)
    return check(fn, cases, events_problem, "idle_from_events", "the trace's own idle_fraction",
                 call=lambda learner, events, step_time_s, _label: learner(events, step_time_s),
                 passed=f"idle_from_events: {len(cases)} traces ({len(real_traces)} of them real) match the "
                        f"trace's idle_fraction -> correct")


def events_cases(rng) -> list[tuple]:
    cases = []
    for ranks in (2, 3, 4, 5, 8):
        for actions in (1, 3, 6):
            cases.append(synthetic_events(rng, ranks, actions, empty_rank=ranks > 3 and actions == 3))
    cases.append(([[]], 1.0))            # one rank that never worked
    return cases


def events_score(cases, outputs):
    return score_cases(cases, outputs, events_problem)


GRADED = [Graded(name="idle_fraction", points=2, cases=idle_cases, score=idle_score, forbidden=(IDLE_REFERENCE, OVERHEAD_REFERENCE)),
          Graded(name="idle_from_events", points=2, cases=events_cases, score=events_score)]
