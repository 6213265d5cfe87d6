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
schedules (``torch/distributed/pipelining/schedules.py``): per rank, each compute action followed by the send of its
output and preceded (no later) by the receive of its input, wherever the other stage lives on another rank. Where
each receive goes is chosen so that first-in-first-out matching (NCCL) is right for every valid schedule, and as
late as that allows (``lower``'s rules; ``message_order`` is the one order both ends of every pair follow).

    >>> lower([["0F0", "0B0"], ["1F0", "1B0"]])
    [[0F0, 0SEND_F0, 0RECV_B0, 0B0], [1RECV_F0, 1F0, 1B0, 1SEND_B0]]
"""
from __future__ import annotations

from dataclasses import dataclass

from .actions import FORWARD, GRADIENT_KINDS, INPUT, WEIGHT, Action, ScheduleError, parse, shape, stage_owners

__all__ = ["RECV", "SEND", "Comm", "backward_kinds", "consumer", "dependencies", "input_source", "lower",
           "message_order", "output_target", "producer"]

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


def message_order(schedule) -> dict[Action, int]:
    """Every message's place in one global order: the order in which a unit-time run of the schedule sends them.

    Round by round, every rank whose next action has all its ``dependencies`` done (in an earlier round) runs it;
    the messages of one round are ordered by rank. Keys are messages named by the action that consumes them (as
    ``Comm.message``). Raises ScheduleError if the run gets stuck (``validate`` says why in more words).
    """
    schedule = parse(schedule)
    _, num_stages, _ = shape(schedule)
    kinds = backward_kinds(schedule)
    cursor, done, order = [0] * len(schedule), set(), {}
    while any(c < len(actions) for c, actions in zip(cursor, schedule)):
        runnable = [r for r, actions in enumerate(schedule) if cursor[r] < len(actions)
                    and all(d in done for d in dependencies(actions[cursor[r]], num_stages, kinds))]
        if not runnable:
            stuck = ", ".join(f"rank {r} at {actions[cursor[r]]}" for r, actions in enumerate(schedule)
                              if cursor[r] < len(actions))
            raise ScheduleError(f"the schedule cannot finish ({stuck}): run labs.validate on it to see why")
        for r in runnable:
            message = consumer(schedule[r][cursor[r]], num_stages, kinds)
            if message is not None:
                order[message] = len(order)
        done.update(schedule[r][cursor[r]] for r in runnable)
        for r in runnable:
            cursor[r] += 1
    return order


def lower(schedule, keep_order_with: str = "peer") -> list[list]:
    """Per rank, the compute actions with explicit ``Comm`` sends and receives for every message that crosses ranks,
    placed so that a transport matching messages first in, first out (NCCL; gloo without tags) runs them right:

    1. a SEND right after the action that produces the message (as PyTorch's ``_add_send_recv``);
    2. the receives from one peer in the order that peer sends, each no later than the action that consumes it (so
       when a peer sends m1 before m2 but this rank needs m2 first, m1's receive is posted before m2's consumer:
       the only early buffer the in-order rule costs);
    3. every pair of ranks issues the pair's ops, both directions, in one global order (``message_order``): before
       a SEND to peer p, the receives from p that come earlier in that order are posted. A stream that runs a
       pair's sends and receives one after another (NCCL's per-pair communicator) then cannot wait on itself.
       ``keep_order_with="rank"`` applies this across all peers (one stream per rank: NCCL with eager init).

    Within these rules every receive is posted as late as possible, so the receive buffers a rank holds at once are
    bounded by the schedule's shape, not by M (``labs.schedules.in_order.receive_buffers_peak``: at most 3 for
    every generator at P <= 4). Every schedule that ``validate`` accepts lowers, whatever order its ranks consume
    their messages in. Accepts what ``parse`` accepts; raises ScheduleError when a stage sits on two ranks or the
    schedule cannot finish, ValueError for another ``keep_order_with``. Messages between two stages of one rank stay
    local and get no Comm.
    """
    if keep_order_with not in ("peer", "rank"):
        raise ValueError(f"keep_order_with is 'peer' or 'rank', got {keep_order_with!r}")
    schedule = parse(schedule)
    _, num_stages, _ = shape(schedule)
    owners = stage_owners(schedule)
    kinds = backward_kinds(schedule)
    order = message_order(schedule)
    lowered = []
    for rank, actions in enumerate(schedule):
        sources = {a: producer(a, num_stages, kinds) for a in actions}
        incoming = sorted((order[a], a, owners[p.stage]) for a, p in sources.items()
                          if p is not None and owners[p.stage] != rank)
        ops: list = []

        def post_through(position: int, peer: int) -> None:
            """Post, in the global order, the pending receives (from ``peer``, or any in "rank" mode) up to
            ``position``."""
            due = [item for item in incoming if item[0] <= position and (keep_order_with == "rank" or item[2] == peer)]
            for item in due:
                incoming.remove(item)
                ops.append(Comm(RECV, item[1], item[2], item[1]))

        for a in actions:
            upstream, downstream = producer(a, num_stages, kinds), consumer(a, num_stages, kinds)
            if upstream is not None and owners[upstream.stage] != rank:
                post_through(order[a], owners[upstream.stage])
            ops.append(a)
            if downstream is not None and owners[downstream.stage] != rank:
                post_through(order[downstream], owners[downstream.stage])
                ops.append(Comm(SEND, a, owners[downstream.stage], downstream))
        lowered.append(ops)
    return lowered
