"""Lowering: which stage receives each action's output, and the sends and receives a schedule implies.

This is the one place that knows how data flows between stages (the simulator, the runtime's transport, the
in-order check, the trace analysis and the Perfetto export all read it):

* a forward ``sFm`` consumes stage s-1's forward of m (stage 0 reads the batch) and feeds stage s+1's forward;
* a backward ``sBm`` consumes stage s+1's backward of m (the last stage starts from its loss) and feeds stage s-1's
  backward; it also needs its own stage's forward of m;
* a weight step ``sWm`` needs its own stage's ``sBm`` and sends nothing.

``lower(schedule)`` makes the messages explicit, as PyTorch's ``_add_send_recv`` pass does for its compute-only
schedules (``torch/distributed/pipelining/schedules.py``): per rank, every compute action preceded by a receive of
its input and followed by a send of its output, wherever the other stage lives on another rank.

    >>> lower([["0F0", "0B0"], ["1F0", "1B0"]])
    [[0F0, 0SEND_F0, 0RECV_B0, 0B0], [1RECV_F0, 1F0, 1B0, 1SEND_B0]]
"""
from __future__ import annotations

from dataclasses import dataclass

from .actions import BACKWARD, FORWARD, WEIGHT, Action, parse, shape, stage_owners

__all__ = ["RECV", "SEND", "Comm", "consumer", "dependencies", "input_source", "lower", "output_target", "producer"]

SEND, RECV = "SEND", "RECV"


def input_source(action: Action, num_stages: int) -> int | None:
    """The stage whose output ``action`` consumes as its input, or None (stage 0's forward reads the batch, the last
    stage's backward starts from its loss, a W step receives nothing)."""
    if action.kind == FORWARD and action.stage > 0:
        return action.stage - 1
    if action.kind == BACKWARD and action.stage < num_stages - 1:
        return action.stage + 1
    return None


def output_target(action: Action, num_stages: int) -> int | None:
    """The stage that receives what ``action`` produces, or None (the last stage's forward ends in the loss, stage
    0's backward has nobody upstream, a W step produces weight gradients that stay)."""
    if action.kind == FORWARD and action.stage < num_stages - 1:
        return action.stage + 1
    if action.kind == BACKWARD and action.stage > 0:
        return action.stage - 1
    return None


def producer(action: Action, num_stages: int) -> Action | None:
    """The action on another stage whose output ``action`` consumes (``2F5`` -> ``1F5``, ``2B5`` -> ``3B5``), or None."""
    source = input_source(action, num_stages)
    return None if source is None else Action(source, action.kind, action.microbatch)


def consumer(action: Action, num_stages: int) -> Action | None:
    """The action on another stage that consumes ``action``'s output (``2F5`` -> ``3F5``, ``2B5`` -> ``1B5``), or None."""
    target = output_target(action, num_stages)
    return None if target is None else Action(target, action.kind, action.microbatch)


def dependencies(action: Action, num_stages: int) -> list[Action]:
    """The actions that must finish before ``action`` can start: its own stage's earlier step of the micro-batch
    (F before B, B before W) and the producer of the message it consumes."""
    s, m = action.stage, action.microbatch
    if action.kind == WEIGHT:
        return [Action(s, BACKWARD, m)]
    own = [Action(s, FORWARD, m)] if action.kind == BACKWARD else []
    upstream = producer(action, num_stages)
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
    lowered = []
    for rank, actions in enumerate(schedule):
        ops: list = []
        for a in actions:
            upstream, downstream = producer(a, num_stages), consumer(a, num_stages)
            if upstream is not None and owners[upstream.stage] != rank:
                ops.append(Comm(RECV, a, owners[upstream.stage], a))
            ops.append(a)
            if downstream is not None and owners[downstream.stage] != rank:
                ops.append(Comm(SEND, a, owners[downstream.stage], downstream))
        lowered.append(ops)
    return lowered
