"""A pipeline schedule is data: one list of actions per rank.

An action is written the way PyTorch's ``torch.distributed.pipelining`` writes it: ``2F5`` means stage 2 runs the
forward of micro-batch 5; ``B`` is a backward, ``W`` a weight-gradient step (zero-bubble schedules split the backward
into B, the input gradient, and W, the weight gradient). A schedule is a ``list[list[Action]]``: entry ``r`` is what
rank ``r`` runs, in order. The same lists feed the validator below, the simulator, the real runtime and the plots.

    >>> sched = gpipe(2, 2)
    >>> [[str(a) for a in actions] for actions in sched]
    [['0F0', '0F1', '0B0', '0B1'], ['1F0', '1F1', '1B0', '1B1']]
    >>> print(render(sched))
    rank 0: F0 F1 -- -- B0 B1
    rank 1: -- F0 F1 B0 B1 --

Generators: ``naive``, ``gpipe``, ``one_f_one_b`` and ``interleaved``; zero-bubble ones in ``labs.schedules.zero_bubble``
(``make(name, ...)`` picks any by name).
``validate`` checks a schedule before any process starts and says which rank would wait forever on what.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

FORWARD, BACKWARD, WEIGHT = "F", "B", "W"
_ACTION = re.compile(r"^\s*([0-9]+)\s*([FBW])\s*([0-9]+)\s*$", re.ASCII)  # ASCII digits only: '٢F٥' is no 2F5
KINDS = (FORWARD, BACKWARD, WEIGHT)

Schedule = list  # list[list[Action]]: one list per rank


class ScheduleError(ValueError):
    """A schedule that cannot run: the message names the rank and the action."""


@dataclass(frozen=True, order=True)
class Action:
    stage: int
    kind: str
    microbatch: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    __repr__ = __str__


def parse_action(text) -> Action:
    """``"2F5"`` -> ``Action(stage=2, kind="F", microbatch=5)``; an Action passes through."""
    if isinstance(text, Action):
        if (text.kind not in KINDS or any(isinstance(n, bool) or not isinstance(n, int) or n < 0
                                          for n in (text.stage, text.microbatch))):
            raise ScheduleError(f"cannot run Action(stage={text.stage!r}, kind={text.kind!r}, microbatch="
                                f"{text.microbatch!r}): stage and micro-batch are whole numbers >= 0 and the kind "
                                f"is one of {', '.join(KINDS)}")
        return text
    match = _ACTION.match(str(text))
    if not match:
        raise ScheduleError(f"cannot read action {text!r}: write it as STAGE KIND MICROBATCH, e.g. '2F5' or '0B3'")
    return Action(int(match[1]), match[2], int(match[3]))


def parse(schedule) -> Schedule:
    """Accept lists of Actions or strings (``[["0F0", "0B0"], ...]``) or one string per rank (``"0F0 0B0"``)."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ScheduleError("a schedule is a non-empty list with one list of actions per rank")
    ranks = []
    for actions in schedule:
        if isinstance(actions, str):
            actions = actions.split()
        if not isinstance(actions, (list, tuple)):
            raise ScheduleError(f"rank {len(ranks)}'s entry is {actions!r}: each rank needs a list of actions "
                                f"(['0F0', '0B0']) or one string ('0F0 0B0')")
        ranks.append([parse_action(a) for a in actions])
    return ranks


# ---------------------------------------------------------------- generators


def _check_counts(num_ranks: int, num_microbatches: int, virtual_stages: int = 1) -> None:
    if not isinstance(num_ranks, int) or num_ranks < 1:
        raise ScheduleError(f"the number of stages/ranks must be a whole number >= 1, got {num_ranks!r}")
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ScheduleError(f"the number of micro-batches M must be a whole number >= 1, got {num_microbatches!r}")
    if not isinstance(virtual_stages, int) or virtual_stages < 1:
        raise ScheduleError(f"virtual stages v must be a whole number >= 1, got {virtual_stages!r}")


def naive(num_ranks: int) -> Schedule:
    """One batch, no micro-batching: forward 0 -> P-1, then backward P-1 -> 0."""
    return gpipe(num_ranks, 1)


def gpipe(num_ranks: int, num_microbatches: int) -> Schedule:
    """Fill-drain: every forward, then every backward (in micro-batch order, as PyTorch's ScheduleGPipe)."""
    _check_counts(num_ranks, num_microbatches)
    return [[Action(r, FORWARD, m) for m in range(num_microbatches)]
            + [Action(r, BACKWARD, m) for m in range(num_microbatches)] for r in range(num_ranks)]


def one_f_one_b(num_ranks: int, num_microbatches: int) -> Schedule:
    """PipeDream-Flush: P-1-r warm-up forwards on rank r, then one forward one backward, then the remaining backwards."""
    _check_counts(num_ranks, num_microbatches)
    schedule = []
    for r in range(num_ranks):
        warmup = min(num_ranks - 1 - r, num_microbatches)
        actions = [Action(r, FORWARD, m) for m in range(warmup)]
        for i in range(num_microbatches - warmup):
            actions += [Action(r, FORWARD, warmup + i), Action(r, BACKWARD, i)]
        actions += [Action(r, BACKWARD, m) for m in range(num_microbatches - warmup, num_microbatches)]
        schedule.append(actions)
    return schedule


def interleaved(num_ranks: int, num_microbatches: int, virtual_stages: int) -> Schedule:
    """Interleaved 1F1B (Megatron-LM): v model chunks per rank, stage s on rank s mod P.

    Micro-batches go round in groups of P: a rank runs P micro-batches through chunk 0, the same P through chunk 1,
    and so on; backwards walk the chunks in reverse. Rank r warms up with 2(P-1-r) + (v-1)P forwards.
    """
    _check_counts(num_ranks, num_microbatches, virtual_stages)
    P, M, v = num_ranks, num_microbatches, virtual_stages
    if M % P:
        raise ScheduleError(f"interleaved 1F1B sends micro-batches round in groups of P={P}: "
                            f"choose M as a multiple of {P} (got M={M})")
    total = M * v

    def action(r: int, k: int, kind: str) -> Action:
        chunk = (k // P) % v
        if kind == BACKWARD:
            chunk = v - 1 - chunk
        microbatch = (k // (P * v)) * P + k % P
        return Action(chunk * P + r, kind, microbatch)

    schedule = []
    for r in range(P):
        warmup = min(2 * (P - 1 - r) + (v - 1) * P, total)
        actions = [action(r, k, FORWARD) for k in range(warmup)]
        for k in range(total - warmup):
            actions += [action(r, warmup + k, FORWARD), action(r, k, BACKWARD)]
        actions += [action(r, k, BACKWARD) for k in range(total - warmup, total)]
        schedule.append(actions)
    return schedule


SCHEDULES = ("naive", "gpipe", "1f1b", "interleaved", "zb-h1", "zb-v")  # the last two: labs.schedules.zero_bubble


def make(name: str, num_ranks: int, num_microbatches: int, virtual_stages: int = 1) -> Schedule:
    """Build a schedule by name: one of ``naive``, ``gpipe``, ``1f1b``, ``interleaved``, ``zb-h1``, ``zb-v``."""
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    _check_counts(num_ranks, num_microbatches, virtual_stages)
    if name.startswith("zb-"):
        from ..schedules import zero_bubble
        return zero_bubble.make(name, num_ranks, num_microbatches, virtual_stages)
    if name != "interleaved" and virtual_stages != 1:
        raise ScheduleError(f"{name} puts one stage on each rank: virtual stages v={virtual_stages} needs "
                            f"--schedule interleaved (or set v=1)")
    if name == "naive":
        if num_microbatches != 1:
            raise ScheduleError(f"the naive schedule runs one batch (M=1), got M={num_microbatches}: "
                                f"use gpipe or 1f1b for micro-batches")
        return naive(num_ranks)
    if name == "gpipe":
        return gpipe(num_ranks, num_microbatches)
    if name == "1f1b":
        return one_f_one_b(num_ranks, num_microbatches)
    if virtual_stages < 2:
        raise ScheduleError(f"interleaved needs v >= 2 model chunks per rank, got v={virtual_stages}")
    return interleaved(num_ranks, num_microbatches, virtual_stages)


# ---------------------------------------------------------------- shape and dependencies


def shape(schedule: Schedule) -> tuple[int, int, int]:
    """(number of ranks, number of stages, number of micro-batches) that the actions mention."""
    actions = [a for acts in schedule for a in acts]
    if not actions:
        raise ScheduleError("the schedule has no actions")
    return len(schedule), max(a.stage for a in actions) + 1, max(a.microbatch for a in actions) + 1


def stage_owners(schedule: Schedule) -> dict[int, int]:
    """Which rank runs each stage. A stage's actions must all sit on one rank (it holds that stage's weights)."""
    owners: dict[int, int] = {}
    for rank, actions in enumerate(schedule):
        for a in actions:
            if owners.setdefault(a.stage, rank) != rank:
                raise ScheduleError(f"stage {a.stage} appears on rank {owners[a.stage]} and on rank {rank} "
                                    f"({a}): each stage's forward and backward must run on the rank holding it")
    return owners


def dependencies(action: Action, num_stages: int, has_weight_step: bool = False) -> list[Action]:
    """The actions that must finish before ``action`` can start."""
    s, m = action.stage, action.microbatch
    if action.kind == FORWARD:
        return [Action(s - 1, FORWARD, m)] if s > 0 else []
    if action.kind == BACKWARD:
        deps = [Action(s, FORWARD, m)]
        return deps + [Action(s + 1, BACKWARD, m)] if s < num_stages - 1 else deps
    return [Action(s, BACKWARD, m)]


def uses_weight_step(schedule: Schedule) -> bool:
    return any(a.kind == WEIGHT for acts in schedule for a in acts)


# ---------------------------------------------------------------- validation


def validate(schedule, num_microbatches: int | None = None, num_stages: int | None = None,
             world_size: int | None = None) -> Schedule:
    """Check a schedule before any process starts; return it parsed, or raise ScheduleError saying what to fix.

    It rejects missing or repeated work, a dependency broken on one rank (a B before its F), and a schedule that
    can never finish: then the message names each stuck rank, the action it waits on forever and why.
    """
    schedule = parse(schedule)
    ranks, stages, microbatches = shape(schedule)
    if world_size is not None and world_size != ranks:
        raise ScheduleError(f"the schedule has {ranks} ranks but the world size is {world_size}: "
                            f"launch {ranks} processes or build the schedule for {world_size}")
    stages = num_stages if num_stages is not None else stages
    microbatches = num_microbatches if num_microbatches is not None else microbatches
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
            for dep in dependencies(a, stages, weight):
                if owners[dep.stage] == rank and position[dep] > position[a]:
                    raise ScheduleError(f"rank {rank} runs {a} before {dep}, which {a} needs: "
                                        f"move {dep} earlier in rank {rank}'s list")
    _check_finishes(schedule, stages, weight, owners)
    return schedule


def _check_finishes(schedule: Schedule, stages: int, weight: bool, owners: dict[int, int]) -> None:
    """Run the schedule with every rank waiting for its inputs; report the ranks that can never go on."""
    done: set[Action] = set()
    cursor = [0] * len(schedule)
    progress = True
    while progress:
        progress = False
        for rank, actions in enumerate(schedule):
            while cursor[rank] < len(actions) and all(d in done for d in
                                                       dependencies(actions[cursor[rank]], stages, weight)):
                done.add(actions[cursor[rank]])
                cursor[rank] += 1
                progress = True
    stuck = [r for r, actions in enumerate(schedule) if cursor[r] < len(actions)]
    if not stuck:
        return
    lines = []
    for r in stuck:
        waiting = schedule[r][cursor[r]]
        missing = [d for d in dependencies(waiting, stages, weight) if d not in done]
        blockers = ", ".join(f"{d} (rank {owners[d.stage]}, itself waiting at {schedule[owners[d.stage]][cursor[owners[d.stage]]]})"
                             for d in missing)
        lines.append(f"rank {r} waits forever on {waiting}: it needs {blockers}")
    raise ScheduleError("the schedule deadlocks:\n  " + "\n  ".join(lines)
                        + "\nreorder the lists so that every action's inputs are produced before it is needed")


# ---------------------------------------------------------------- text rendering


def render(schedule, slots: list[list[tuple[int, int, Action]]] | None = None) -> str:
    """A text grid in the seed notes' style, one row per rank, ``--`` where the rank idles.

    Without ``slots`` every action takes one time slot and starts as soon as its inputs exist (what the simulator
    gives with unit costs). ``slots`` (per rank: (first slot, last slot + 1, action)) draws any other timing.
    """
    schedule = parse(schedule)
    if slots is None:
        from ..timeline.simulator import simulate, Costs
        trace = simulate(schedule, Costs(forward=1.0, backward=1.0, weight=1.0 if uses_weight_step(schedule) else 0))
        slots = [[(round(e.start), round(e.end), e.action) for e in events] for events in trace.events]
    _, stages, _ = shape(schedule)
    one_stage_per_rank = stages == len(schedule)
    chunk_digits = len(str((stages - 1) // len(schedule)))
    width = 1 + max(len(str(a.microbatch)) for acts in schedule for a in acts) + (0 if one_stage_per_rank else 1 + chunk_digits)
    end = max((stop for row in slots for _, stop, _ in row), default=0)
    rows = []
    for rank, row in enumerate(slots):
        cells = ["-" * width] * end
        for start, stop, a in row:
            label = f"{a.kind}{a.microbatch}" if one_stage_per_rank else f"{a.kind}{a.microbatch}.{a.stage // len(schedule)}"
            for t in range(start, max(stop, start + 1)):
                cells[t] = label.ljust(width)
        rows.append(f"rank {rank}: " + " ".join(cells).rstrip())
    return "\n".join(rows)
