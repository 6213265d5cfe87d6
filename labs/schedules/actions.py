"""A pipeline schedule is data: one list of actions per rank, in PyTorch's notation.

An action is written the way ``torch.distributed.pipelining`` writes it: ``2F5`` means stage 2 runs the forward of
micro-batch 5; ``B`` is a backward, ``W`` a weight-gradient step (zero-bubble schedules split the backward into B, the
input gradient, and W, the weight gradient). A schedule is a ``list[list[Action]]``: entry ``r`` is what pipeline rank
``r`` runs, in order. A **stage** is one of the P·v model chunks (``Action.stage``); stage s of an interleaved
schedule runs on rank s mod P. The same lists feed the validator, the simulator, the real runtime and the plots.

    >>> parse(["0F0 0B0", ["1F0", "1B0"]])
    [[0F0, 0B0], [1F0, 1B0]]
    >>> shape(parse(["0F0 0F1 0B0 0B1", "1F0 1F1 1B0 1B1"]))
    (2, 2, 2)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..checks import whole_number
from ..errors import InputError, ScheduleError

__all__ = ["BACKWARD", "FORWARD", "KINDS", "WEIGHT", "Action", "Schedule", "ScheduleError", "check_counts", "parse",
           "parse_action", "shape", "stage_owners", "uses_weight_step"]

FORWARD, BACKWARD, WEIGHT = "F", "B", "W"
KINDS = (FORWARD, BACKWARD, WEIGHT)
_ACTION = re.compile(r"^\s*([0-9]+)\s*([FBW])\s*([0-9]+)\s*$", re.ASCII)  # ASCII digits only: '٢F٥' is no 2F5

Schedule = list  # list[list[Action]]: one list per pipeline rank


@dataclass(frozen=True, order=True)
class Action:
    """One step of one rank: ``stage`` (0 .. P·v-1), ``kind`` (F, B or W), ``microbatch`` (0 .. M-1)."""

    stage: int
    kind: str
    microbatch: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    __repr__ = __str__


def parse_action(text) -> Action:
    """``"2F5"`` -> ``Action(stage=2, kind="F", microbatch=5)``; an Action passes through (checked).

    Raises ScheduleError for text that is not STAGE KIND MICROBATCH or an Action with a bad field.
    """
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
    """Lists of Actions or strings (``[["0F0", "0B0"], ...]``) or one string per rank (``"0F0 0B0"``) -> Actions.

    Raises ScheduleError for anything that is not a non-empty list of such per-rank lists.
    """
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


def check_counts(P: int, M: int, v: int = 1) -> None:
    """Raise ScheduleError unless P (pipeline ranks), M (micro-batches) and v (chunks per rank) are whole numbers
    >= 1 (``labs.checks.whole_number``'s rule and wording)."""
    for name, value in (("the number of pipeline ranks P", P), ("the number of micro-batches M", M),
                        ("virtual stages v", v)):
        try:
            whole_number(name, value, 1)
        except InputError as problem:
            raise ScheduleError(str(problem)) from None


def shape(schedule: Schedule) -> tuple[int, int, int]:
    """(P pipeline ranks, number of stages P·v, M micro-batches) that the parsed actions mention.

    Raises ScheduleError for a schedule without actions.
    """
    actions = [a for acts in schedule for a in acts]
    if not actions:
        raise ScheduleError("the schedule has no actions")
    return len(schedule), max(a.stage for a in actions) + 1, max(a.microbatch for a in actions) + 1


def stage_owners(schedule: Schedule) -> dict[int, int]:
    """Stage -> the rank that runs it. Raises ScheduleError when a stage's actions sit on two ranks (a stage's
    forward and backward must run where its weights are)."""
    owners: dict[int, int] = {}
    for rank, actions in enumerate(schedule):
        for a in actions:
            if owners.setdefault(a.stage, rank) != rank:
                raise ScheduleError(f"stage {a.stage} appears on rank {owners[a.stage]} and on rank {rank} "
                                    f"({a}): each stage's forward and backward must run on the rank holding it")
    return owners


def uses_weight_step(schedule: Schedule) -> bool:
    """Whether the schedule splits the backward into B and W (zero bubble, arXiv 2401.10241)."""
    return any(a.kind == WEIGHT for acts in schedule for a in acts)
