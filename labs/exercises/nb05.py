"""Notebook 05 (interleaved 1F1B): checks and graded scores of ``chunk_owner`` and ``forward_order``.

* ``chunk_owner(stage, P)`` -> the rank that holds model stage ``stage`` when P ranks hold v chunks each, assigned
  round-robin (stage s on rank s mod P, so every micro-batch visits every rank v times).
* ``forward_order(rank, P, M, v)`` -> the list of (chunk, microbatch) pairs of that rank's forwards, in Megatron-LM's
  order: micro-batches go round in groups of P; a rank runs a group through its chunk 0, the same group through its
  chunk 1, ..., then the next group. (Chunk c of rank r is stage c*P + r.) Compared with the forwards of
  ``labs.interleaved``.

Graded: the kernel returns the learner's values as plain data; the grader compares them in its own process. Calling
``labs.interleaved`` or ``reference_forward_order`` from ``forward_order`` is not an answer.
"""
from __future__ import annotations

from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.schedules import FORWARD, interleaved

ORDER_REFERENCES = ("labs.exercises.nb05.reference_forward_order", "labs.schedules.interleaved")


def reference_forward_order(rank: int, P: int, M: int, v: int) -> list[tuple[int, int]]:
    return [(a.stage // P, a.microbatch) for a in interleaved(P, M, v)[rank] if a.kind == FORWARD]


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
    return [(stage, P) for P in range(1, 9) for stage in range(4 * P)]


@exercise("forward_order")
def order_problem(case, got) -> str | None:
    rank, P, M, v = case
    where = f"forward_order({rank}, {P}, {M}, {v})"
    try:
        got = [tuple(int(x) for x in pair) for pair in got]
    except (TypeError, ValueError):
        return f"{where} returned {str(got)[:200]}: expected a list of (chunk, microbatch) pairs"
    want = reference_forward_order(rank, P, M, v)
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return (f"{where}: position {first} is {got[first] if first < len(got) else 'missing'}, expected "
                f"{want[first] if first < len(want) else 'nothing (too many entries)'}; expected starts "
                f"{want[:P * v + 2]}")
    return None


def check_forward_order(fn) -> bool:
    cases = [(0, 4, 8, 2), (3, 4, 8, 2), (1, 2, 4, 3)]
    return check(fn, cases, order_problem, "forward_order", "labs.interleaved", forbidden=ORDER_REFERENCES,
                 passed=f"forward_order: {len(cases)} cases match the forwards of labs.interleaved -> correct")


def _order_cases(rng) -> list[tuple]:
    return [(rank, P, M, v) for P in (1, 2, 3, 4) for M in (P, 2 * P, 3 * P) for v in (1, 2, 3, 4)
            for rank in range(P)]


GRADED = [Graded(name="chunk_owner", points=1, cases=_owner_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, owner_problem)),
          Graded(name="forward_order", points=2, cases=_order_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, order_problem), forbidden=ORDER_REFERENCES)]
