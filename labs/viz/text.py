"""A schedule as text, in the seed notes' style: one row per rank, ``--`` where the rank idles.

    >>> print(render([["0F0", "0F1", "0B0", "0B1"], ["1F0", "1F1", "1B0", "1B1"]]))
    rank 0: F0 F1 -- -- B0 B1
    rank 1: -- F0 F1 B0 B1 --
"""
from __future__ import annotations

from ..schedules import Action, parse, shape
from ..timeline.costs import Costs
from ..timeline.simulator import simulate

__all__ = ["render"]


def render(schedule, slots: list[list[tuple[int, int, Action]]] | None = None) -> str:
    """A text grid of ``schedule`` (anything ``labs.parse`` accepts), one row per rank.

    Without ``slots`` every action takes one time slot and starts as soon as its inputs exist (what the simulator
    gives with unit costs). ``slots`` (per rank: (first slot, last slot + 1, action)) draws any other timing, e.g. a
    measured one. With several chunks per rank a cell reads ``F3.1``: forward of micro-batch 3 on the rank's chunk 1.
    Raises ScheduleError for a schedule the simulator rejects.
    """
    schedule = parse(schedule)
    if slots is None:
        unit = Costs(forward_s=1.0, backward_s=1.0, weight_s=1.0 if _split(schedule) else 0.0)
        trace = simulate(schedule, unit)
        slots = [[(round(e.start_s), round(e.end_s), e.action) for e in events] for events in trace.events]
    _, stages, _ = shape(schedule)
    one_stage_per_rank = stages == len(schedule)
    chunk_digits = len(str((stages - 1) // len(schedule)))
    width = 1 + max(len(str(a.microbatch)) for acts in schedule for a in acts) + (0 if one_stage_per_rank
                                                                                  else 1 + chunk_digits)
    end = max((stop for row in slots for _, stop, _ in row), default=0)
    rows = []
    for rank, row in enumerate(slots):
        cells = ["-" * width] * end
        for start, stop, a in row:
            label = (f"{a.kind}{a.microbatch}" if one_stage_per_rank
                     else f"{a.kind}{a.microbatch}.{a.stage // len(schedule)}")
            for t in range(start, max(stop, start + 1)):
                cells[t] = label.ljust(width)
        rows.append(f"rank {rank}: " + " ".join(cells).rstrip())
    return "\n".join(rows)


def _split(schedule) -> bool:
    """One slot for each of F, I, W (a full B among them then takes two); one slot for a B when nothing is split."""
    return any(a.kind in "IW" for acts in schedule for a in acts)
