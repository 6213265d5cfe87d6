"""Notebook 02 (micro-batching): checks and graded tests of ``idle_fraction`` and ``idle_from_events``.

* ``idle_fraction(P, M)`` -> the share of a GPipe step the ranks sit idle, derived by counting slots:
  (P-1)/(M+P-1) (0.75 at P=4, M=1). Compared with the idle share of *simulated* GPipe timelines, not a formula.
* ``idle_from_events(events, step_time)`` -> the idle share of a step read off a trace: ``events[r]`` is rank r's
  list of ``(start, end)`` pairs; the answer is 1 - (busy rank-time) / (P * step_time). Compared with
  ``Trace.idle_fraction`` on synthetic traces (staggered ranks, a rank with no events) and on real ones.

The visible checks say when the learner's function only calls the reference it is asked to write.
"""
from __future__ import annotations

import contextlib
import random
import sys

import labs
from labs.exercises._common import Answer, collect, report
from labs.grading import Graded
from labs.schedules import gpipe
from labs.simulate import Costs, simulate
from labs.simulate import bubble_overhead as _overhead
from labs.simulate import idle_fraction as _idle
from labs.trace import Event, RankTrace, Trace

TOLERANCE = 1e-9
IDLE_CASES = [(4, 1, 1.0, 2.0), (4, 8, 1.0, 2.0), (4, 16, 2.0, 1.0), (2, 3, 1.0, 3.0), (8, 32, 1.0, 2.0)]


@contextlib.contextmanager
def watching(module_attributes):
    """Replace each ``(module, name)`` by a wrapper that records its calls; yields the list of names called."""
    called, saved = [], []
    for module, name in module_attributes:
        original = getattr(module, name)
        saved.append((module, name, original))

        def spy(*args, _original=original, _name=f"{module.__name__}.{name}", **kwargs):
            called.append(_name)
            return _original(*args, **kwargs)
        setattr(module, name, spy)
    try:
        yield called
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


# labs.simulate is also the name of a function in labs/__init__: take the module itself
REFERENCE_IDLE = ((labs, "idle_fraction"), (sys.modules["labs.simulate"], "idle_fraction"))


def _number(answer: Answer, where: str):
    if answer.problem:
        return None, answer.problem
    try:
        return float(answer.value), None
    except (TypeError, ValueError):
        return None, f"{where} returned {answer.value!r}, expected a number"


def simulated_idle(P: int, M: int, forward: float = 1.0, backward: float = 2.0) -> float:
    """The idle share of a simulated GPipe step (equal stages): what ``idle_fraction`` must predict."""
    return simulate(gpipe(P, M), Costs(forward, backward)).idle_fraction


def idle_problem(fn, P: int, M: int, want: float) -> str | None:
    where = f"{fn.__name__}({P}, {M})"
    got, error = _number(Answer(fn, where, P, M), where)
    if error:
        return error
    if abs(got - want) <= TOLERANCE * max(1.0, abs(want)):
        return None
    hint = ""
    if abs(got - 100 * want) <= 1e-6 * max(1.0, 100 * abs(want)):
        hint = " (return a ratio, not a percentage)"
    elif abs(got - _overhead(P, M)) <= TOLERANCE:
        hint = (" - that is (P-1)/M, the bubble relative to the ideal compute time M(F+B), not a share of the "
                "step: count the slots of the whole step")
    elif abs(got - (1 - want)) <= TOLERANCE:
        hint = " - that is the busy share; the idle share is what is left"
    return f"{where} returned {got:.6g}, expected {want:.6g} (the idle share of a simulated GPipe step){hint}"


def check_idle_fraction(fn) -> bool:
    with watching(REFERENCE_IDLE) as called:
        problems = collect(lambda P, M, f, b: idle_problem(fn, P, M, simulated_idle(P, M, f, b)), IDLE_CASES,
                           "idle_fraction", "labs.idle_fraction")
    if problems is None:
        return False
    if called:
        print(f"idle_fraction calls {called[0]}, the function this exercise asks you to write: derive it from the "
              f"slots instead (carrying on with the reference)")
        return False
    ok = report(problems, f"idle_fraction: {len(IDLE_CASES)} cases match the idle share of simulated GPipe steps, "
                          f"e.g. P=4, M=8 -> 3/11 = 0.27 -> correct", shown=1)
    if not ok:
        print("(carrying on with the reference, labs.idle_fraction)")
    return ok


# --- idle_from_events ---------------------------------------------------------------------------------------------

def events_of(trace: Trace) -> list[list[tuple[float, float]]]:
    """A trace's events as plain data: per rank, the (start, end) of each action."""
    return [[(e.start, e.end) for e in events] for events in trace.events]


def trace_from(events, step_time: float) -> Trace:
    """The Trace of plain (start, end) events (actions are placeholders: only the times matter here)."""
    ranks = []
    for rank, pairs in enumerate(events):
        rt = RankTrace(rank=rank, events=[Event(labs.Action(rank, "F", i), s, e) for i, (s, e) in enumerate(pairs)])
        rt.finish = step_time
        ranks.append(rt)
    return Trace(ranks)


def synthetic_events(rng: random.Random, ranks: int, actions: int, empty_rank: bool = False):
    """Per rank, ``actions`` non-overlapping (start, end) pairs at random times; the step ends after the last."""
    events, latest = [], 0.0
    for rank in range(ranks):
        t, pairs = rng.uniform(0, 2), []
        for _ in range(0 if (empty_rank and rank == ranks - 1) else actions):
            t += rng.uniform(0, 1)                     # a gap (maybe none)
            duration = rng.uniform(0.1, 2)
            pairs.append((round(t, 6), round(t + duration, 6)))
            t += duration
        latest = max([latest] + [e for _, e in pairs])
        events.append(pairs)
    return events, round(latest + rng.uniform(0, 0.5), 6)


def events_problem(fn, events, step_time: float, label: str) -> str | None:
    where = f"{fn.__name__}(<{label}>)"
    got, error = _number(Answer(fn, where, events, step_time), where)
    if error:
        return error
    want = trace_from(events, step_time).idle_fraction
    if abs(got - want) <= TOLERANCE * max(1.0, abs(want)):
        return None
    hint = ""
    busy_share = 1 - want
    if abs(got - busy_share) <= TOLERANCE:
        hint = " - that is the busy share"
    elif any(not pairs for pairs in events):
        hint = " - does a rank with no events count? it sits idle the whole step"
    return f"{where} returned {got:.6g}, expected {want:.6g}{hint}"


def _event_cases(real_traces=()):
    rng = random.Random(2)
    cases = [(*synthetic_events(rng, 4, 3), "4 ranks, 3 actions each, staggered"),
             (*synthetic_events(rng, 3, 5, empty_rank=True), "3 ranks, the last one with no events"),
             ([[(0.0, 1.0)], [(1.0, 2.0)]], 2.0, "2 ranks taking turns: half idle")]
    cases += [(events_of(t), t.step_time, f"the real trace with M={t.ranks[0].peak_activations}") for t in real_traces]
    return cases


def check_idle_from_events(fn, real_traces=()) -> bool:
    cases = _event_cases(real_traces)
    problems = collect(lambda e, s, label: events_problem(fn, e, s, label), cases, "idle_from_events",
                       "the trace's own idle_fraction")
    if problems is None:
        return False
    ok = report(problems, f"idle_from_events: {len(cases)} traces ({len(real_traces)} of them real) match the "
                          f"trace's idle_fraction -> correct", shown=1)
    if not ok:
        print("(carrying on with the trace's own idle_fraction)")
    return ok


def _graded_idle_fraction(fn) -> None:
    for P in range(1, 13):
        for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100):
            problem = idle_problem(fn, P, M, _idle(P, M))
            assert problem is None, problem
    for P, M, f, b in [(4, 8, 1.0, 2.0), (3, 5, 2.0, 1.0), (6, 4, 1.0, 3.0), (2, 1, 1.0, 1.0), (5, 12, 1.0, 2.0)]:
        problem = idle_problem(fn, P, M, simulated_idle(P, M, f, b))
        assert problem is None, f"against a simulated GPipe step (F={f}, B={b}): {problem}"


def _graded_idle_from_events(fn) -> None:
    rng = random.Random(7)
    for ranks in (1, 2, 3, 5, 8):
        for actions in (1, 4):
            events, step = synthetic_events(rng, ranks, actions, empty_rank=ranks > 2)
            problem = events_problem(fn, events, step, f"{ranks} ranks, {actions} actions")
            assert problem is None, problem


GRADED = [Graded(name="idle_fraction", points=2, test=_graded_idle_fraction),
          Graded(name="idle_from_events", points=2, test=_graded_idle_from_events)]
