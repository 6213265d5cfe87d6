"""A pipeline schedule is data: one list of actions per rank, in PyTorch's notation.

An action is written the way ``torch.distributed.pipelining`` writes it (its ``_ComputationType``), ``2F5``: stage 2
runs kind F on micro-batch 5. The four compute kinds:

    F  forward            2F5: stage 2's forward of micro-batch 5
    I  input gradient     2I5: the gradient of stage 2's input (what stage 1 waits for); the weights untouched
    W  weight gradient    2W5: stage 2's weight gradients of micro-batch 5, from what 2I5 kept
    B  full backward      2B5: input and weight gradients at once (a plain ``loss.backward()``)

Per (stage, micro-batch) a schedule runs F, then EITHER one B OR one I and one W (I before W); one schedule may mix
the two forms (PyTorch's ``ScheduleDualPipeV`` does). Zero-bubble schedules (arXiv 2401.10241) split the backward
into I and W so that W's can fill idle time. A schedule is a ``list[list[Action]]``: entry ``r`` is what pipeline
rank ``r`` runs, in order. A **stage** is one of the P·v model chunks (``Action.stage``); stage s of an interleaved
schedule runs on rank s mod P. The same lists feed the validator, the simulator, the real runtime and the plots.

**Old lists.** Up to now this course wrote the input gradient as ``B`` whenever a list also had ``W``. ``parse``
still reads them: a list with W's and no I at all is such a list, and its B's are read as I's. That cannot misread
a list in PyTorch's notation, where every W needs its I: a valid new list that has a W has an I. ``notation="torch"``
reads every B as a full backward (and then ``validate`` refuses B and W on one micro-batch).

    >>> parse(["0F0 0B0", ["1F0", "1B0"]])
    [[0F0, 0B0], [1F0, 1B0]]
    >>> parse(["0F0 0B0 0W0"])        # an old list: its B is the input gradient
    [[0F0, 0I0, 0W0]]
    >>> shape(parse(["0F0 0F1 0B0 0B1", "1F0 1F1 1B0 1B1"]))
    (2, 2, 2)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..checks import whole_number
from ..errors import InputError, ScheduleError

__all__ = ["BACKWARD", "FORWARD", "GRADIENT_KINDS", "INPUT", "KINDS", "NOTATIONS", "WEIGHT", "Action", "Schedule",
           "ScheduleError", "check_counts", "is_old_notation", "parse", "parse_action", "shape", "stage_owners",
           "to_text", "uses_split_backward"]

FORWARD, INPUT, WEIGHT, BACKWARD = "F", "I", "W", "B"
KINDS = (FORWARD, INPUT, WEIGHT, BACKWARD)  # PyTorch's compute kinds, in its order
GRADIENT_KINDS = (INPUT, BACKWARD)  # the kinds that send an input gradient upstream
NOTATIONS = ("auto", "torch", "course-split")
_ACTION = re.compile(r"^\s*([0-9]+)\s*([FIWB])\s*([0-9]+)\s*$", re.ASCII)  # ASCII digits only: '٢F٥' is no 2F5

Schedule = list  # list[list[Action]]: one list per pipeline rank


@dataclass(frozen=True, order=True)
class Action:
    """One step of one rank: ``stage`` (0 .. P·v-1), ``kind`` (F, I, W or B), ``microbatch`` (0 .. M-1)."""

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
        raise ScheduleError(f"cannot read action {text!r}: write it as STAGE KIND MICROBATCH with KIND one of "
                            f"{'/'.join(KINDS)}, e.g. '2F5', '0I3', '0W3' or '1B0'")
    return Action(int(match[1]), match[2], int(match[3]))


def parse(schedule, notation: str = "auto") -> Schedule:
    """Lists of Actions or strings (``[["0F0", "0B0"], ...]``) or one string per rank (``"0F0 0B0"``) -> Actions.

    ``notation``: "torch" (B is always the full backward), "course-split" (B is the input gradient, as the course's
    split lists were written before PyTorch's four kinds) or "auto" (the default: "course-split" exactly when the
    list has W's and no I; see the module docstring). Raises ScheduleError for anything that is not a non-empty list
    of such per-rank lists, or for an I in a list read as "course-split".
    """
    if notation not in NOTATIONS:
        raise ScheduleError(f"notation is one of {', '.join(NOTATIONS)}, got {notation!r}")
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
    old = is_old_notation(ranks) if notation == "auto" else notation == "course-split"
    if not old:
        return ranks
    if any(a.kind == INPUT for acts in ranks for a in acts):
        raise ScheduleError("a 'course-split' list writes the input gradient as B, so it has no I actions: read "
                            "this list with notation='torch'")
    return [[Action(a.stage, INPUT, a.microbatch) if a.kind == BACKWARD else a for a in acts] for acts in ranks]


def is_old_notation(schedule) -> bool:
    """Whether parsed lists are in the course's old split notation: W's and no I (their B's are input gradients)."""
    kinds = {a.kind for acts in schedule for a in acts}
    return WEIGHT in kinds and INPUT not in kinds


def to_text(schedule) -> list[list[str]]:
    """The lists as PyTorch writes them (its compute-only CSV rows): ``[["0F0", "0I0", "0W0"], ...]``."""
    return [[str(a) for a in acts] for acts in parse(schedule)]


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


def uses_split_backward(schedule: Schedule) -> bool:
    """Whether parsed lists split any backward into I and W (zero bubble, arXiv 2401.10241)."""
    return any(a.kind in (INPUT, WEIGHT) for acts in schedule for a in acts)
