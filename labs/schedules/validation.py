"""Check a schedule before any process starts: complete, ordered, deadlock-free, runnable, and fit for in-order links.

``validate`` rejects missing or repeated work, a dependency broken on one rank (a B before its F), and a schedule
that can never finish: then the message names each stuck rank, the action it waits on forever and why.
``check_in_order`` (from ``in_order``) checks what an in-order transport (NCCL, whose point-to-point messages between
two ranks match first in, first out) needs on top; every schedule ``validate`` accepts passes it, because the runtime
runs the lowered lists (``labs.schedules.lowering.lower``), whose receives follow each peer's send order.
``check_runnable`` checks that the runtime executes every kind of action the schedule holds (``RUNNABLE_KINDS``).
All of them raise ScheduleError with what to change; all read the data flow from ``labs.schedules.lowering``.
"""
from __future__ import annotations

from .actions import BACKWARD, FORWARD, KINDS, WEIGHT, Action, Schedule, ScheduleError, parse, shape, stage_owners
from .actions import uses_weight_step
from .in_order import check_in_order
from .lowering import dependencies

__all__ = ["RUNNABLE_KINDS", "check_in_order", "check_runnable", "validate"]

RUNNABLE_KINDS = KINDS  # the action kinds labs.runtime executes: F, B and W


def validate(schedule, M: int | None = None, num_stages: int | None = None, P: int | None = None) -> Schedule:
    """Check a schedule before any process starts; return it parsed (``list[list[Action]]``).

    ``M`` micro-batches, ``num_stages`` stages (P·v) and ``P`` pipeline ranks, when given, must match the schedule's
    (default: what its actions mention). Raises ScheduleError saying what to fix: a rank count other than P, an
    action out of range or repeated, a missing F/B (or W, when the schedule splits the backward), an action listed
    before one it needs on the same rank, or a deadlock (each stuck rank, the action it waits on, and why).
    """
    schedule = parse(schedule)
    ranks, stages, microbatches = shape(schedule)
    if P is not None and P != ranks:
        raise ScheduleError(f"the schedule has {ranks} ranks but the pipeline has P={P}: "
                            f"launch {ranks} processes or build the schedule for {P}")
    stages = num_stages if num_stages is not None else stages
    microbatches = M if M is not None else microbatches
    owners = stage_owners(schedule)
    weight = uses_weight_step(schedule)
    seen: dict[Action, int] = {}
    for rank, actions in enumerate(schedule):
        for a in actions:
            if not (0 <= a.stage < stages and 0 <= a.microbatch < microbatches):
                raise ScheduleError(f"rank {rank} runs {a}, but there are only {stages} stages and "
                                    f"{microbatches} micro-batches (numbered from 0)")
            if a in seen:
                raise ScheduleError(f"rank {rank} runs {a} twice: each action runs exactly once")
            seen[a] = rank
    kinds = (FORWARD, BACKWARD, WEIGHT) if weight else (FORWARD, BACKWARD)
    for s in range(stages):
        for m in range(microbatches):
            for kind in kinds:
                a = Action(s, kind, m)
                if a not in seen:
                    where = f"rank {owners[s]} never runs it" if s in owners else f"no rank runs stage {s}"
                    raise ScheduleError(f"{a} is missing: {where} (every stage runs F and B for "
                                        f"every micro-batch{', and W' if weight else ''})")
    for rank, actions in enumerate(schedule):
        position = {a: i for i, a in enumerate(actions)}
        for a in actions:
            for dep in dependencies(a, stages):
                if owners[dep.stage] == rank and position[dep] > position[a]:
                    raise ScheduleError(f"rank {rank} runs {a} before {dep}, which {a} needs: "
                                        f"move {dep} earlier in rank {rank}'s list")
    _check_finishes(schedule, stages, owners)
    return schedule


def _check_finishes(schedule: Schedule, stages: int, owners: dict[int, int]) -> None:
    """Run the schedule with every rank waiting for its inputs; report the ranks that can never go on."""
    done: set[Action] = set()
    cursor = [0] * len(schedule)
    progress = True
    while progress:
        progress = False
        for rank, actions in enumerate(schedule):
            while cursor[rank] < len(actions) and all(d in done for d in dependencies(actions[cursor[rank]], stages)):
                done.add(actions[cursor[rank]])
                cursor[rank] += 1
                progress = True
    stuck = [r for r, actions in enumerate(schedule) if cursor[r] < len(actions)]
    if not stuck:
        return
    lines = []
    for r in stuck:
        waiting = schedule[r][cursor[r]]
        missing = [d for d in dependencies(waiting, stages) if d not in done]
        blockers = ", ".join(f"{d} (rank {owners[d.stage]}, itself waiting at "
                             f"{schedule[owners[d.stage]][cursor[owners[d.stage]]]})" for d in missing)
        lines.append(f"rank {r} waits forever on {waiting}: it needs {blockers}")
    raise ScheduleError("the schedule deadlocks:\n  " + "\n  ".join(lines)
                        + "\nreorder the lists so that every action's inputs are produced before it is needed")


def check_runnable(schedule) -> None:
    """Raise ScheduleError if the schedule holds an action kind the runtime does not execute (``RUNNABLE_KINDS``)."""
    unknown = sorted({a.kind for acts in parse(schedule) for a in acts} - set(RUNNABLE_KINDS))
    if unknown:
        raise ScheduleError(f"the schedule has {'/'.join(unknown)} actions, but the runtime runs only "
                            f"{'/'.join(RUNNABLE_KINDS)} actions: simulate it (labs.simulate) or drop them")
