"""PyTorch's own pipeline orders as course schedules, for the lowering and in-order tests (needs torch; builds no
process group): ``labs.course.torch_orders`` reads each class's ``pipeline_order`` and keeps its four kinds (F, I,
W and the full B, which DualPipeV mixes with I and W). ``Schedule1F1B`` is left out: its ``_get_pipeline_order`` is
off by one on the last rank (it lists F1..FM there, torch 2.13; the order it executes is the course's 1f1b).
"""
from __future__ import annotations

from labs.course import torch_orders as T

NAMES = ("GPipe", "Interleaved1F1B", "LoopedBFS", "InterleavedZeroBubble", "ZBVZeroBubble", "DualPipeV")


def course_schedule(name: str, P: int, M: int, v: int = 2) -> list[list[str]]:
    """PyTorch's order for ``name`` at P ranks, M micro-batches (v chunks where the class takes it) as strings in the
    course's notation (``2I5``); raises what the class raises for counts it refuses."""
    rows, _ = T.convert(T.torch_order(name, P, M, 1 if name in T.SINGLE else v))
    return [[str(a) for a in row] for row in rows]


def points(Ps=(2, 3, 4), extra=7):
    """(name, P, M, schedule) for every class but 1F1B, P in ``Ps``, M = P .. P+extra-1 where the class accepts M."""
    for name in NAMES:
        for P in Ps:
            for M in range(P, P + extra):
                try:
                    yield name, P, M, course_schedule(name, P, M)
                except (ValueError, AssertionError, RuntimeError):  # the class refuses this M (DualPipeV: M >= 2P)
                    continue
