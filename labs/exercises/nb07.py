"""Notebook 07 (communication): checks and graded score of ``traffic``.

``traffic(P, M, v, microbatch_bytes)`` -> ``(messages, bytes)`` that one training step sends between ranks, for a
pipeline of P ranks, M micro-batches and v model chunks per rank (stage s on rank s % P; v = 1 is GPipe or 1F1B),
when one micro-batch's activation at a stage boundary is ``microbatch_bytes`` bytes. The grader recomputes the answer
by simulating the schedule and counting the messages that cross ranks, on hidden P, M, v and sizes.
"""
from __future__ import annotations

from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.schedules import gpipe, interleaved
from labs.timeline import simulate

__all__ = ["CHECK_CASES", "GRADED", "REFERENCE", "check_traffic", "expected", "problem"]

REFERENCE = "labs.theory.traffic"


def expected(P: int, M: int, v: int, microbatch_bytes: int) -> tuple[int, int]:
    """Counted, not computed: the simulator's messages between ranks for the schedule with these P, M, v."""
    schedule = gpipe(P, M) if v == 1 else interleaved(P, M, v)
    messages = simulate(schedule).messages
    return messages, messages * microbatch_bytes


@exercise("traffic")
def problem(case, got) -> str | None:
    P, M, v, nbytes = case
    want = expected(P, M, v, nbytes)
    where = f"traffic({P}, {M}, {v}, {nbytes})"
    if not (isinstance(got, list) and len(got) == 2 and all(isinstance(x, (int, float)) for x in got)):
        return f"{where} returned {str(got)[:80]}, expected a pair (messages, bytes)"
    if list(got) == list(want):
        return None
    hint = ""
    if got[0] == want[0] // 2:
        hint = " - count the gradient that comes back as well as the activation that goes forward"
    elif P == 1 and got[0]:
        hint = " - with one rank every stage is on the same rank: nothing crosses"
    elif got[0] == 2 * (P - 1) * M and v > 1:
        hint = " - with v chunks per rank there are v*P stages, so v*P - 1 boundaries, each between two ranks"
    elif got[0] == want[0] and got[1] != want[1]:
        hint = " - the messages are right; every message carries one micro-batch's activation (or its gradient)"
    return f"{where} returned {tuple(got)}, expected {want} (messages, bytes){hint}"


CHECK_CASES = [(4, 8, 1, 2048), (4, 8, 2, 2048), (2, 3, 1, 100), (3, 6, 3, 512)]


def check_traffic(fn) -> bool:
    P, M, v, b = CHECK_CASES[0]
    return check(fn, CHECK_CASES, problem, "traffic", REFERENCE, forbidden=(REFERENCE,),
                 passed=f"traffic: {len(CHECK_CASES)} cases match the messages a simulated step sends, e.g. P={P}, "
                        f"M={M}, v={v}: {expected(P, M, v, b)[0]} messages -> correct")


def _cases(rng) -> list[tuple]:
    cases = [(1, 4, 1, 64), (1, 4, 2, 64), (2, 1, 1, 8), (4, 4, 2, 2048), (8, 16, 1, 4096)]
    while len(cases) < 24:
        P = rng.randint(2, 8)
        v = rng.choice([1, 1, 2, 3, 4])
        M = P * rng.randint(1, 4) if v > 1 else rng.randint(1, 24)
        cases.append((P, M, v, 4 * rng.randint(1, 4096)))
    return cases


GRADED = [Graded(name="traffic", points=2, cases=_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, problem), forbidden=(REFERENCE,))]
