"""Notebook 02 (micro-batching): checks and graded tests of ``bubble_overhead`` and ``idle_fraction``.

* ``bubble_overhead(P, M)`` -> the bubble time relative to the ideal compute time, (P-1)/M (3.0 at P=4, M=1: 300%).
* ``idle_fraction(P, M)`` -> the share of the step the ranks sit idle, (P-1)/(M+P-1) (0.75 at P=4, M=1).

Both are compared with ``labs.simulate``'s closed forms and, for ``idle_fraction``, with the idle fraction of a
simulated GPipe timeline (any F and B costs give the same fraction when every stage costs the same).
"""
from __future__ import annotations

from labs.exercises._common import Answer, collect, report
from labs.grading import Graded
from labs.schedules import gpipe
from labs.simulate import Costs, simulate
from labs.simulate import bubble_overhead as _overhead
from labs.simulate import idle_fraction as _idle

TOLERANCE = 1e-9


def _value(fn, P: int, M: int):
    """fn(P, M) as a float, or an error message."""
    answer = Answer(fn, f"{fn.__name__}({P}, {M})", P, M)
    if answer.problem:
        return None, answer.problem
    got = answer.value
    try:
        return float(got), None
    except (TypeError, ValueError):
        return None, f"{fn.__name__}({P}, {M}) returned {got!r}, expected a number"


def _problem(fn, P: int, M: int, want: float, what: str) -> str | None:
    got, error = _value(fn, P, M)
    if error:
        return error
    if abs(got - want) <= TOLERANCE * max(1.0, abs(want)):
        return None
    hint = ""
    if abs(got - 100 * want) <= 1e-6 * max(1.0, 100 * abs(want)):
        hint = " (return a ratio, not a percentage)"
    elif what == "idle" and abs(got - _overhead(P, M)) <= TOLERANCE:
        hint = " - that is (P-1)/M, the bubble relative to the compute time, not a share of the step"
    elif what == "overhead" and abs(got - _idle(P, M)) <= TOLERANCE:
        hint = " - that is the idle share of the step; the overhead divides the bubble by the compute time only"
    return f"{fn.__name__}({P}, {M}) returned {got:.6g}, expected {want:.6g}{hint}"


def _simulated_idle(P: int, M: int, forward: float = 1.0, backward: float = 2.0) -> float:
    return simulate(gpipe(P, M), Costs(forward, backward)).idle_fraction


def check_bubble_overhead(fn) -> bool:
    cases = [(4, 1), (4, 8), (4, 16), (2, 3), (8, 32)]
    problems = collect(lambda P, M: _problem(fn, P, M, _overhead(P, M), "overhead"), cases, "bubble_overhead",
                       "labs.bubble_overhead")
    return problems is not None and report(
        problems, f"bubble_overhead: {len(cases)} cases match (P-1)/M, e.g. P=4, M=1 -> 3.0 (300%) -> correct", shown=3)


def check_idle_fraction(fn) -> bool:
    cases = [(4, 1), (4, 8), (4, 16), (2, 3), (8, 32)]
    problems = collect(lambda P, M: _problem(fn, P, M, _simulated_idle(P, M), "idle"), cases, "idle_fraction",
                       "labs.idle_fraction")
    return problems is not None and report(
        problems, f"idle_fraction: {len(cases)} cases match the idle share of a simulated GPipe step, "
                  f"e.g. P=4, M=8 -> 3/11 = 0.27 -> correct", shown=3)


def _graded_bubble_overhead(fn) -> None:
    for P in range(1, 13):
        for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100):
            problem = _problem(fn, P, M, _overhead(P, M), "overhead")
            assert problem is None, problem


def _graded_idle_fraction(fn) -> None:
    for P in range(1, 13):
        for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100):
            problem = _problem(fn, P, M, _idle(P, M), "idle")
            assert problem is None, problem
    for P, M, f, b in [(4, 8, 1.0, 2.0), (3, 5, 2.0, 1.0), (6, 4, 1.0, 3.0), (2, 1, 1.0, 1.0), (5, 12, 1.0, 2.0)]:
        problem = _problem(fn, P, M, _simulated_idle(P, M, f, b), "idle")
        assert problem is None, f"against a simulated GPipe step (F={f}, B={b}): {problem}"


GRADED = [Graded(name="bubble_overhead", points=1, test=_graded_bubble_overhead),
          Graded(name="idle_fraction", points=2, test=_graded_idle_fraction)]
