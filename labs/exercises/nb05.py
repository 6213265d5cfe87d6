"""Notebook 05 (interleaved 1F1B): checks and graded tests of ``chunk_owner`` and ``forward_order``.

* ``chunk_owner(stage, P)`` -> the rank that holds model stage ``stage`` when P ranks hold v chunks each, assigned
  round-robin (stage s on rank s mod P, so every micro-batch visits every rank v times).
* ``forward_order(rank, P, M, v)`` -> the list of (chunk, microbatch) pairs of that rank's forwards, in Megatron-LM's
  order: micro-batches go round in groups of P; a rank runs a group through its chunk 0, the same group through its
  chunk 1, ..., then the next group. (Chunk c of rank r is stage c*P + r.) Compared with the forwards of
  ``labs.interleaved``.
"""
from __future__ import annotations

from labs.exercises._common import Answer, collect, report
from labs.grading import Graded
from labs.schedules import FORWARD, interleaved


def reference_forward_order(rank: int, P: int, M: int, v: int) -> list[tuple[int, int]]:
    return [(a.stage // P, a.microbatch) for a in interleaved(P, M, v)[rank] if a.kind == FORWARD]


def _owner_problem(fn, stage: int, P: int) -> str | None:
    answer = Answer(fn, f"chunk_owner({stage}, {P})", stage, P)
    if answer.problem:
        return answer.problem
    got = answer.value
    if got != stage % P:
        return f"chunk_owner({stage}, {P}) returned {got!r}, expected {stage % P}"
    return None


def check_chunk_owner(fn) -> bool:
    cases = [(s, 4) for s in range(8)] + [(5, 2)]
    problems = collect(lambda *case: _owner_problem(fn, *case), cases, "chunk_owner", "stage % P")
    return problems is not None and report(
        problems, f"chunk_owner: stages 0-7 on P=4 go to ranks {[fn(s, 4) for s in range(8)]} -> correct"
        if not problems else "", shown=4)


def _graded_chunk_owner(fn) -> None:
    for P in range(1, 9):
        for stage in range(4 * P):
            problem = _owner_problem(fn, stage, P)
            assert problem is None, problem


def _order_problem(fn, rank: int, P: int, M: int, v: int) -> str | None:
    where = f"forward_order({rank}, {P}, {M}, {v})"
    try:
        got = fn(rank, P, M, v)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001
        return f"{where} raised {type(error).__name__}: {error}"
    try:
        got = [tuple(int(x) for x in pair) for pair in got]
    except (TypeError, ValueError):
        return f"{where} returned {got!r}: expected a list of (chunk, microbatch) pairs"
    want = reference_forward_order(rank, P, M, v)
    if got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return (f"{where}: position {first} is {got[first] if first < len(got) else 'missing'}, expected "
                f"{want[first] if first < len(want) else 'nothing (too many entries)'}; expected starts "
                f"{want[:P * v + 2]}")
    return None


def check_forward_order(fn) -> bool:
    cases = [(0, 4, 8, 2), (3, 4, 8, 2), (1, 2, 4, 3)]
    problems = collect(lambda *case: _order_problem(fn, *case), cases, "forward_order", "labs.interleaved")
    return problems is not None and report(
        problems, f"forward_order: {len(cases)} cases match the forwards of labs.interleaved -> correct")


def _graded_forward_order(fn) -> None:
    for P in (1, 2, 3, 4):
        for M in (P, 2 * P, 3 * P):
            for v in (1, 2, 3, 4):
                for rank in range(P):
                    problem = _order_problem(fn, rank, P, M, v)
                    assert problem is None, problem


GRADED = [Graded(name="chunk_owner", points=1, test=_graded_chunk_owner),
          Graded(name="forward_order", points=2, test=_graded_forward_order)]
