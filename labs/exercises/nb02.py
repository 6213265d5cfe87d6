"""Notebook 02 (micro-batching): checks and graded scores of ``bubble_overhead`` and ``idle_fraction``.

* ``bubble_overhead(P, M)`` -> the bubble time relative to the ideal compute time, (P-1)/M (3.0 at P=4, M=1: 300%).
* ``idle_fraction(P, M)`` -> the share of the step the ranks sit idle, (P-1)/(M+P-1) (0.75 at P=4, M=1).

Both are compared with ``labs.simulate``'s closed forms and, for ``idle_fraction``, with the idle fraction of a
simulated GPipe timeline (any F and B costs give the same fraction when every stage costs the same). The references
``labs.bubble_overhead`` and ``labs.idle_fraction`` are what the exercises ask for: calling them is not an answer.
"""
from __future__ import annotations

from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.schedules import gpipe
from labs.simulate import Costs, simulate
from labs.simulate import bubble_overhead as _overhead
from labs.simulate import idle_fraction as _idle

TOLERANCE = 1e-9
OVERHEAD_REFERENCE, IDLE_REFERENCE = "labs.simulate.bubble_overhead", "labs.simulate.idle_fraction"
REFERENCES = (OVERHEAD_REFERENCE, IDLE_REFERENCE)  # either one gives the other: idle = overhead / (1 + overhead)
SIMULATED = [(4, 8, 1.0, 2.0), (3, 5, 2.0, 1.0), (6, 4, 1.0, 3.0), (2, 1, 1.0, 1.0), (5, 12, 1.0, 2.0)]


def _simulated_idle(P: int, M: int, forward: float = 1.0, backward: float = 2.0) -> float:
    return simulate(gpipe(P, M), Costs(forward, backward)).idle_fraction


def _judge(name: str, P: int, M: int, got, want: float, what: str) -> str | None:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"{name}({P}, {M}) returned {got!r}, expected a number"
    if abs(got - want) <= TOLERANCE * max(1.0, abs(want)):
        return None
    hint = ""
    if abs(got - 100 * want) <= 1e-6 * max(1.0, 100 * abs(want)):
        hint = " (return a ratio, not a percentage)"
    elif what == "idle" and abs(got - _overhead(P, M)) <= TOLERANCE:
        hint = " - that is (P-1)/M, the bubble relative to the compute time, not a share of the step"
    elif what == "overhead" and abs(got - _idle(P, M)) <= TOLERANCE:
        hint = " - that is the idle share of the step; the overhead divides the bubble by the compute time only"
    return f"{name}({P}, {M}) returned {got:.6g}, expected {want:.6g}{hint}"


@exercise("bubble_overhead")
def overhead_problem(case, got) -> str | None:
    P, M = case
    return _judge("bubble_overhead", P, M, got, _overhead(P, M), "overhead")


@exercise("idle_fraction")
def idle_problem(case, got) -> str | None:
    """Against the closed form and, for small pipelines, against simulated GPipe steps with several costs."""
    P, M = case
    problem = _judge("idle_fraction", P, M, got, _idle(P, M), "idle")
    if problem is None and P * M <= 64:
        for _, _, f, b in SIMULATED[:3]:
            simulated = _judge("idle_fraction", P, M, got, _simulated_idle(P, M, f, b), "idle")
            if simulated:
                return f"against a simulated GPipe step (F={f}, B={b}): {simulated}"
    return problem


# ---------------------------------------------------------------- visible checks (in the notebook)
CHECK_CASES = [(4, 8), (4, 16), (2, 3), (8, 32), (4, 1)]


def check_bubble_overhead(fn) -> bool:
    return check(fn, CHECK_CASES, overhead_problem, "bubble_overhead", "labs.bubble_overhead",
                 forbidden=REFERENCES,
                 passed=f"bubble_overhead: {len(CHECK_CASES)} cases match (P-1)/M, e.g. P=4, M=1 -> 3.0 (300%) "
                        f"-> correct")


def check_idle_fraction(fn) -> bool:
    return check(fn, CHECK_CASES, idle_problem, "idle_fraction", "labs.idle_fraction", forbidden=REFERENCES,
                 passed=f"idle_fraction: {len(CHECK_CASES)} cases match the idle share of a simulated GPipe step, "
                        f"e.g. P=4, M=8 -> 3/11 = 0.27 -> correct")


# ---------------------------------------------------------------- graded (cases drawn by the grader, scored there)
def _cases(rng) -> list[tuple]:
    grid = [(P, M) for P in range(1, 13) for M in (1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 100)]
    hidden = [(rng.randint(2, 64), rng.randint(1, 512)) for _ in range(20)]
    return grid + [(P, M) for P, M, _, _ in SIMULATED] + hidden


GRADED = [
    Graded(name="bubble_overhead", points=1, cases=_cases,
           score=lambda cases, outputs: score_cases(cases, outputs, overhead_problem),
           forbidden=REFERENCES),
    Graded(name="idle_fraction", points=2, cases=_cases,
           score=lambda cases, outputs: score_cases(cases, outputs, idle_problem),
           forbidden=REFERENCES),
]
