"""What an in-order transport needs from a lowered schedule, checked before any process starts (no torch).

On NCCL (and on gloo without tags) the messages between two ranks match first in, first out, and a send or receive
holds its pair's stream until the other side's matching op runs ("blocking for the GPU", NCCL's ncclSend/ncclRecv
documentation). ``labs.schedules.lowering.lower`` places every send and receive so that both hold:

* ``check_lowered(lowered)``: per ordered pair of ranks, the receiver posts its receives in the order the sender
  sends (first in, first out), every send follows the action that produces its tensor and every receive comes before
  the action that consumes it;
* ``check_pair_order(lowered)``: both ranks of every pair issue the pair's ops (both directions) in one order;
* ``check_in_order(schedule)``: both, on ``lower(schedule)``; it accepts what ``parse`` accepts (strings too);
* ``check_blocking_in_order(schedule)``: what blocking sends and receives in action order need with in-order
  matching (no lowering there): every receiver consumes a peer's messages in the order the peer sends them;
* ``receive_buffers_peak(lowered)``: per rank, the most receive buffers posted and not yet consumed at once.
"""
from __future__ import annotations

from .actions import ScheduleError, parse, shape, stage_owners
from .lowering import RECV, SEND, Comm, backward_kinds, lower, producer

__all__ = ["check_blocking_in_order", "check_in_order", "check_lowered", "check_pair_order",
           "receive_buffers_peak"]


def check_lowered(lowered) -> None:
    """Raise ScheduleError unless, for every ordered pair of ranks, the receiver posts its receives from the sender in
    the sender's send order, every send follows the action producing it and every receive comes before the action
    consuming it. ``lowered``: per rank, Actions and ``Comm`` ops (what ``lower`` returns)."""
    sends: dict = {}
    receives: dict = {}
    for rank, ops in enumerate(lowered):
        seen = set()
        for op in ops:
            if not isinstance(op, Comm):
                seen.add(op)
            elif op.op == SEND:
                if op.action not in seen:
                    raise ScheduleError(f"rank {rank} sends {op.action}'s output before running {op.action}")
                sends.setdefault((rank, op.peer), []).append(op.message)
            elif op.op == RECV:
                if op.action in seen:
                    raise ScheduleError(f"rank {rank} posts the receive for {op.action} after running it")
                receives.setdefault((op.peer, rank), []).append(op.message)
    for sender, receiver in sorted(set(sends) | set(receives)):
        sent, posted = sends.get((sender, receiver), []), receives.get((sender, receiver), [])
        for i, (message, expected) in enumerate(zip(sent, posted)):
            if message != expected:
                raise ScheduleError(
                    f"messages from rank {sender} to rank {receiver} match first in, first out, but send {i + 1} "
                    f"carries the input of {message} while receive {i + 1} is posted for {expected}: {expected} on "
                    f"rank {receiver} would compute on {message}'s tensor")
        if len(sent) != len(posted):
            raise ScheduleError(f"rank {sender} sends {len(sent)} messages to rank {receiver}, which posts "
                                f"{len(posted)} receives")


def check_pair_order(lowered) -> None:
    """Raise ScheduleError unless both ranks of every pair issue the pair's sends and receives (both directions) in
    one order: what a stream that runs a pair's ops one after another needs (NCCL's per-pair communicator)."""
    sequences: dict = {}
    for rank, ops in enumerate(lowered):
        for op in ops:
            if isinstance(op, Comm):
                sequences.setdefault((rank, op.peer), []).append(op.message)
    for (a, b), mine in sorted(sequences.items()):
        theirs = sequences.get((b, a), [])
        if a < b and mine != theirs:
            i = next(i for i, (x, y) in enumerate(zip(mine + [None], theirs + [None])) if x != y)
            raise ScheduleError(f"ranks {a} and {b} order their messages differently: message {i + 1} is the input "
                                f"of {mine[i] if i < len(mine) else 'nothing'} on rank {a} but of "
                                f"{theirs[i] if i < len(theirs) else 'nothing'} on rank {b}")


def check_in_order(schedule) -> None:
    """Raise ScheduleError if ``lower(schedule)`` would not run on an in-order transport (``check_lowered``,
    ``check_pair_order``). Accepts what ``parse`` accepts. For a schedule ``validate`` accepts it cannot fail: the
    runtime runs the lowered lists, so this is a guard against a lowering bug, kept before any process starts."""
    lowered = lower(schedule)
    check_lowered(lowered)
    check_pair_order(lowered)


def check_blocking_in_order(schedule) -> None:
    """Raise ScheduleError if blocking sends and receives in action order, matched first in, first out, would hand a
    receiver another action's tensor: each rank must consume a peer's messages in the order the peer sends them."""
    schedule = parse(schedule)
    _, num_stages, _ = shape(schedule)
    owners = stage_owners(schedule)
    kinds = backward_kinds(schedule)
    sent: dict = {}
    consumed: dict = {}
    for rank, actions in enumerate(schedule):
        for a in actions:
            upstream = producer(a, num_stages, kinds)
            if upstream is not None and owners[upstream.stage] != rank:
                consumed.setdefault((owners[upstream.stage], rank), []).append(a)
                sent.setdefault((owners[upstream.stage], rank), {})[upstream] = a
    for rank, actions in enumerate(schedule):
        for pair in [(rank, r) for r in range(len(schedule))]:
            order = [sent[pair][a] for a in actions if a in sent.get(pair, {})]
            for want, got in zip(consumed.get(pair, []), order):
                if want != got:
                    raise ScheduleError(
                        f"blocking sends and receives in action order, matched first in, first out: rank {pair[1]} "
                        f"runs {want} before {got}, but rank {rank} sends {got}'s input first, so {want} would "
                        f"compute on the wrong tensor. Run it without blocking=True (the runtime then posts receives "
                        f"in send order), or with transport='tagged'")


def receive_buffers_peak(lowered) -> list[int]:
    """Per rank: the most receive buffers posted and not yet consumed at once (the one being consumed counts)."""
    peaks = []
    for ops in lowered:
        waiting, live, peak = set(), 0, 0
        for op in ops:
            if isinstance(op, Comm):
                if op.op == RECV:
                    waiting.add(op.action)
                    live += 1
                    peak = max(peak, live)
            elif op in waiting:
                live -= 1
        peaks.append(peak)
    return peaks
