"""Lowering: which stage receives each action's output, and the sends and receives a schedule implies.

This is the one place that knows how data flows between stages (the simulator, the runtime's transport, the
in-order check, the trace analysis and the Perfetto export all read it):

    kind  needs                                             its output goes to
    F     F(s-1, m): the activation (stage 0 reads the batch)  stage s+1 (the last stage ends in the loss)
    I     F(s, m) and the input gradient of stage s+1          stage s-1 (stage 0 has nobody upstream)
    B     the same as I                                        stage s-1; the weight gradients stay on this rank
    W     I(s, m)                                              nowhere (only the optimizer step reads ``.grad``)

"The input gradient of stage s+1" comes from whichever of I(s+1, m) or B(s+1, m) the schedule runs
(``backward_kinds``), so one schedule may mix full and split backwards. Every function that names an action on
another stage (``producer``, ``consumer``, ``dependencies``) takes those ``kinds``; without them it assumes the
other stage runs the same kind (right for every schedule that does not mix the two).

``lower(schedule)`` makes the messages explicit, as PyTorch's ``_add_send_recv`` pass does for its compute-only
schedules (``torch/distributed/pipelining/schedules.py``): per rank, every compute action preceded by a receive of
its input and followed by a send of its output, wherever the other stage lives on another rank.

    >>> lower([["0F0", "0B0"], ["1F0", "1B0"]])
    [[0F0, 0SEND_F0, 0RECV_B0, 0B0], [1RECV_F0, 1F0, 1B0, 1SEND_B0]]
"""
from __future__ import annotations

from dataclasses import dataclass

from .actions import FORWARD, GRADIENT_KINDS, INPUT, WEIGHT, Action, parse, shape, stage_owners

__all__ = ["RECV", "SEND", "Comm", "backward_kinds", "consumer", "dependencies", "input_source", "lower",
           "output_target", "producer"]

SEND, RECV = "SEND", "RECV"


def input_source(action: Action, num_stages: int) -> int | None:
    """The stage whose output ``action`` consumes as its input (F: s-1; I and B: s+1), or None (stage 0's forward
    reads the batch, the last stage's I or B starts from its loss, a W step receives nothing)."""
    if action.kind == FORWARD and action.stage > 0:
        return action.stage - 1
    if action.kind in GRADIENT_KINDS and action.stage < num_stages - 1:
        return action.stage + 1
    return None


def output_target(action: Action, num_stages: int) -> int | None:
    """The stage that receives what ``action`` produces (F: s+1; I and B: s-1), or None (the last stage's forward
    ends in the loss, stage 0's I or B has nobody upstream, a W step produces weight gradients that stay)."""
    if action.kind == FORWARD and action.stage < num_stages - 1:
        return action.stage + 1
    if action.kind in GRADIENT_KINDS and action.stage > 0:
        return action.stage - 1
    return None


def backward_kinds(schedule) -> dict[tuple[int, int], str]:
    """(stage, micro-batch) -> "I" or "B": which action produces that pair's input gradient in parsed lists."""
    return {(a.stage, a.microbatch): a.kind for acts in schedule for a in acts if a.kind in GRADIENT_KINDS}


def _on(stage: int, action: Action, kinds: dict | None) -> Action:
    """``action``'s counterpart on ``stage``: a forward's is a forward; a gradient's is I or B as ``kinds`` says."""
    kind = action.kind
    if kind in GRADIENT_KINDS and kinds is not None:
        kind = kinds.get((stage, action.microbatch), kind)
    return Action(stage, kind, action.microbatch)


def producer(action: Action, num_stages: int, kinds: dict | None = None) -> Action | None:
    """The action on another stage whose output ``action`` consumes (``2F5`` -> ``1F5``, ``2I5`` -> ``3I5``, or
    ``3B5`` when ``kinds`` says stage 3 runs a full backward), or None."""
    source = input_source(action, num_stages)
    return None if source is None else _on(source, action, kinds)


def consumer(action: Action, num_stages: int, kinds: dict | None = None) -> Action | None:
    """The action on another stage that consumes ``action``'s output (``2F5`` -> ``3F5``, ``2I5`` -> ``1I5``, or
    the kind ``kinds`` names), or None."""
    target = output_target(action, num_stages)
    return None if target is None else _on(target, action, kinds)


def dependencies(action: Action, num_stages: int, kinds: dict | None = None) -> list[Action]:
    """The actions that must finish before ``action`` can start: its own stage's earlier step of the micro-batch
    (F before I or B, I before W) and the producer of the message it consumes (``kinds``: ``backward_kinds``)."""
    s, m = action.stage, action.microbatch
    if action.kind == WEIGHT:
        return [Action(s, INPUT, m)]
    own = [Action(s, FORWARD, m)] if action.kind in GRADIENT_KINDS else []
    upstream = producer(action, num_stages, kinds)
    return own + ([upstream] if upstream is not None else [])


@dataclass(frozen=True)
class Comm:
    """A send or a receive between two ranks: ``op`` (SEND or RECV), the compute ``action`` on this rank that
    produces (SEND) or consumes (RECV) the message, and the ``peer`` rank on the other end. ``message`` names the
    message by the action that consumes it, the same on both ends. Written like PyTorch's ``1SEND_F0``."""

    op: str
    action: Action
    peer: int
    message: Action

    def __str__(self) -> str:
        return f"{self.action.stage}{self.op}_{self.action.kind}{self.action.microbatch}"

    __repr__ = __str__


def lower(schedule) -> list[list]:
    """Per rank, the compute actions with explicit ``Comm`` receives (before the action that needs the message) and
    sends (right after the action that produced it), for every message that crosses ranks.

    Accepts what ``parse`` accepts; raises ScheduleError when a stage sits on two ranks. Messages between two stages
    of the same rank stay local and get no Comm.
    """
    schedule = parse(schedule)
    _, num_stages, _ = shape(schedule)
    owners = stage_owners(schedule)
    kinds = backward_kinds(schedule)
    lowered = []
    for rank, actions in enumerate(schedule):
        ops: list = []
        for a in actions:
            upstream, downstream = producer(a, num_stages, kinds), consumer(a, num_stages, kinds)
            if upstream is not None and owners[upstream.stage] != rank:
                ops.append(Comm(RECV, a, owners[upstream.stage], a))
            ops.append(a)
            if downstream is not None and owners[downstream.stage] != rank:
                ops.append(Comm(SEND, a, owners[downstream.stage], downstream))
        lowered.append(ops)
    return lowered
