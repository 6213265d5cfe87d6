"""Check a schedule before any process starts: complete, ordered, deadlock-free, runnable, and fit for in-order links.

``validate`` rejects missing or repeated work, a dependency broken on one rank (an I before its F, a W before its I),
and a schedule that can never finish: then the message names each stuck rank, the action it waits on forever and
why. Its rules, for the four kinds of ``labs.schedules.actions``:

1. every action names a stage < num_stages and a micro-batch < M, and runs once;
2. a stage's actions all sit on one rank (it holds that stage's weights);
3. per (stage, micro-batch): one F, then EITHER one B OR one I and one W (both forms may appear in one schedule);
4. on its own rank an action comes after what it needs there (F before its I or B, I before its W);
5. run with every rank waiting for its inputs, every rank finishes (else: the deadlock, rank by rank).

``check_in_order`` (from ``in_order``) checks what an in-order transport (NCCL, whose point-to-point messages between
two ranks match first in, first out) needs on top; every schedule ``validate`` accepts passes it, because the runtime
runs the lowered lists (``labs.schedules.lowering.lower``), whose receives follow each peer's send order.
``check_runnable`` checks that the runtime executes every kind of action the schedule holds (``RUNNABLE_KINDS``).
All of them raise ScheduleError with what to change; all read the data flow from ``labs.schedules.lowering``.
"""
from __future__ import annotations

from .actions import BACKWARD, FORWARD, INPUT, KINDS, WEIGHT, Action, Schedule, ScheduleError, parse, shape
from .actions import stage_owners
from .in_order import check_in_order
from .lowering import backward_kinds, dependencies

__all__ = ["RUNNABLE_KINDS", "check_in_order", "check_runnable", "validate"]

RUNNABLE_KINDS = KINDS  # the action kinds labs.runtime executes: F, I, W and B


def validate(schedule, M: int | None = None, num_stages: int | None = None, P: int | None = None,
             notation: str = "auto") -> Schedule:
    """Check a schedule before any process starts; return it parsed (``list[list[Action]]``).

    ``M`` micro-batches, ``num_stages`` stages (P·v) and ``P`` pipeline ranks, when given, must match the schedule's
    (default: what its actions mention); ``notation``: see ``labs.schedules.parse``. Raises ScheduleError saying what
    to fix: a rank count other than P, an action out of range or repeated, a missing F or backward (B, or I and W),
    B together with I or W on one micro-batch, an action listed before one it needs on the same rank, or a deadlock
    (each stuck rank, the action it waits on, and why).

    What an accepted schedule is guaranteed: every stage runs F and a backward (B, or I then W) for every micro-batch
    exactly once, on the one rank that holds the stage; each rank's list keeps its own dependencies; with
    non-blocking sends every rank finishes (rules 1-5 above); and the runtime runs it with exact gradients on tagged
    and on in-order (NCCL, first in, first out) matching alike, because it walks ``lower(schedule)``, whose receives
    follow each peer's send order and one order per pair of ranks (``check_in_order`` cannot fail for it; tested on
    every generator and PyTorch's orders). Not guaranteed: blocking sends in action order (a deadlock there is real:
    ``check_blocking_in_order`` checks their in-order needs), speed, or fitting in memory.
    """
    schedule = parse(schedule, notation)
    ranks, stages, microbatches = shape(schedule)
    if P is not None and P != ranks:
        raise ScheduleError(f"the schedule has {ranks} ranks but the pipeline has P={P}: "
                            f"launch {ranks} processes or build the schedule for {P}")
    stages = num_stages if num_stages is not None else stages
    inferred = M is None
    microbatches = M if M is not None else _microbatches(schedule, microbatches)
    owners = stage_owners(schedule)
    seen: dict[Action, int] = {}
    for rank, actions in enumerate(schedule):
        for a in actions:
            if inferred and 0 <= a.stage < stages and a.microbatch >= microbatches:
                raise ScheduleError(f"rank {rank} runs {a}, but the stages run {microbatches} micro-batches each "
                                    f"(numbered 0 to {microbatches - 1}): renumber rank {rank}'s micro-batches "
                                    f"from 0 (or, with M={a.microbatch + 1}, give every stage all of them)")
            if not (0 <= a.stage < stages and 0 <= a.microbatch < microbatches):
                raise ScheduleError(f"rank {rank} runs {a}, but there are only {stages} stages and "
                                    f"{microbatches} micro-batches (numbered from 0)")
            if a in seen:
                raise ScheduleError(f"rank {rank} runs {a} twice: each action runs exactly once")
            seen[a] = rank
    for s in range(stages):
        for m in range(microbatches):
            _check_complete(s, m, {kind for kind in KINDS if Action(s, kind, m) in seen}, owners)
    kinds = backward_kinds(schedule)
    for rank, actions in enumerate(schedule):
        position = {a: i for i, a in enumerate(actions)}
        for a in actions:
            for dep in dependencies(a, stages, kinds):
                if owners[dep.stage] == rank and position[dep] > position[a]:
                    raise ScheduleError(f"rank {rank} runs {a} before {dep}, which {a} needs: "
                                        f"move {dep} earlier in rank {rank}'s list")
    _check_finishes(schedule, stages, owners, kinds)
    return schedule


def _check_complete(s: int, m: int, has: set, owners: dict[int, int]) -> None:
    """Rule 3 for stage ``s``, micro-batch ``m`` (``has``: the kinds the schedule runs for them)."""
    where = f"rank {owners[s]} never runs it" if s in owners else f"no rank runs stage {s}"
    if FORWARD not in has:
        raise ScheduleError(f"{Action(s, FORWARD, m)} is missing: {where} (every stage runs F and a backward for "
                            f"every micro-batch)")
    if BACKWARD in has and has & {INPUT, WEIGHT}:
        split = " and ".join(str(Action(s, k, m)) for k in (INPUT, WEIGHT) if k in has)
        raise ScheduleError(f"stage {s} runs both {Action(s, BACKWARD, m)} (the full backward) and {split}: run "
                            f"either B, or I then W, for each micro-batch")
    if BACKWARD not in has and not {INPUT, WEIGHT} <= has:
        missing = " and ".join(str(Action(s, k, m)) for k in (INPUT, WEIGHT) if k not in has) if has & {
            INPUT, WEIGHT} else str(Action(s, BACKWARD, m))
        raise ScheduleError(f"{missing} is missing: {where} (every micro-batch needs a backward on every stage: "
                            f"{Action(s, BACKWARD, m)}, or {Action(s, INPUT, m)} then {Action(s, WEIGHT, m)})")


def _microbatches(schedule: Schedule, largest: int) -> int:
    """M when the caller did not say: the most distinct micro-batches any stage runs forward (not the largest index
    + 1, which a rank numbering its micro-batches from 1 would inflate, blaming another rank for a "missing" one)."""
    counts: dict[int, set] = {}
    for actions in schedule:
        for a in actions:
            if a.kind == FORWARD:
                counts.setdefault(a.stage, set()).add(a.microbatch)
    return max((len(found) for found in counts.values()), default=largest)


def _check_finishes(schedule: Schedule, stages: int, owners: dict[int, int], kinds: dict) -> None:
    """Run the schedule with every rank waiting for its inputs; report the ranks that can never go on."""
    done: set[Action] = set()
    cursor = [0] * len(schedule)
    progress = True
    while progress:
        progress = False
        for rank, actions in enumerate(schedule):
            while cursor[rank] < len(actions) and all(d in done for d in dependencies(actions[cursor[rank]], stages,
                                                                                          kinds)):
                done.add(actions[cursor[rank]])
                cursor[rank] += 1
                progress = True
    stuck = [r for r, actions in enumerate(schedule) if cursor[r] < len(actions)]
    if not stuck:
        return
    lines = []
    for r in stuck:
        waiting = schedule[r][cursor[r]]
        missing = [d for d in dependencies(waiting, stages, kinds) if d not in done]
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
