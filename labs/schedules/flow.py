"""Flow control: how many unfinished sends a rank may have towards one peer (no torch).

A send finishes when the receiver posts the matching receive (gloo hands the payload over then; NCCL's send waits
for its receive). Until then the payload stays on the sender. The lowering posts every receive as late as it can
(``labs.schedules.lowering.lower``), so a sender that runs ahead of its receiver (GPipe's last rank through the
backward, a fast stage before a slow one) would hold one payload per message it is ahead: memory growing with M.
The runtime therefore caps the sends a rank has not seen finish, per destination, at a **send window** W: before a
new send, it waits until fewer than W of its earlier sends to that peer are unfinished. Megatron-LM gets the same
bound by exchanging each message with a matching receive in one batched call (``p2p_communication.py``).

``send_window(lowered)`` is the smallest W that lets the lowered lists finish. A rank's program here is
deterministic (each op waits only for a fixed message or a fixed earlier send), so whether it finishes does not
depend on timing (a Kahn process network with bounded channels); one untimed run decides it. A W too small for a
schedule is a real deadlock: ``finishes(lowered, 1)`` is False for a rank that must send two messages to a peer
before the peer posts the first receive.
"""
from __future__ import annotations

from .lowering import RECV, SEND, Comm

__all__ = ["finishes", "send_window"]


def finishes(lowered, window: int | None) -> bool:
    """Whether the lowered lists run to the end when each rank waits before a send until fewer than ``window`` of its
    earlier sends to that peer are unfinished (None: no cap). ``lowered``: per rank, Actions and ``Comm`` ops (what
    ``lower`` returns); messages between a pair match in the order ``lower`` posts them (``check_lowered``)."""
    cursor = [0] * len(lowered)
    sent: dict = {}  # (sender, receiver) -> sends issued
    posted: dict = {}  # (sender, receiver) -> receives posted
    needs: list[dict] = []  # per rank: consuming action -> (sender, how many sends it needs from it)
    for rank, ops in enumerate(lowered):
        count: dict = {}
        mine = {}
        for op in ops:
            if isinstance(op, Comm) and op.op == RECV:
                count[op.peer] = count.get(op.peer, 0) + 1
                mine[op.action] = (op.peer, count[op.peer])
        needs.append(mine)
    progress = True
    while progress:
        progress = False
        for rank, ops in enumerate(lowered):
            while cursor[rank] < len(ops):
                op = ops[cursor[rank]]
                if isinstance(op, Comm) and op.op == RECV:
                    posted[(op.peer, rank)] = posted.get((op.peer, rank), 0) + 1
                elif isinstance(op, Comm) and op.op == SEND:
                    pair = (rank, op.peer)
                    unfinished = sent.get(pair, 0) - min(sent.get(pair, 0), posted.get(pair, 0))
                    if window is not None and unfinished >= window:
                        break
                    sent[pair] = sent.get(pair, 0) + 1
                elif op in needs[rank]:
                    peer, count = needs[rank][op]
                    if sent.get((peer, rank), 0) < count:
                        break
                cursor[rank] += 1
                progress = True
    return all(c == len(ops) for c, ops in zip(cursor, lowered))


def send_window(lowered) -> int:
    """The smallest send window (>= 1) with which ``lowered`` finishes; the sends of the longest pair when none
    smaller does (then the cap never binds). ValueError if the lists cannot finish even without a cap (a lowering
    that ``check_lowered`` would refuse)."""
    most = max([sum(1 for op in ops if isinstance(op, Comm) and op.op == SEND) for ops in lowered] + [1])
    if not finishes(lowered, None):
        raise ValueError("the lowered lists cannot finish even with unlimited sends: check them with check_lowered")
    return next(w for w in range(1, most + 1) if finishes(lowered, w) or w == most)
