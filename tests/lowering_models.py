"""For the tests: a model of how NCCL runs lowered lists, and planted weaker lowerings (negative controls).

``run_streams(lowered, per)``: per rank a compute stream in list order (an action waits for the receives of its
input) and the sends and receives on one stream per peer (``per="pair"``: PyTorch's lazy per-pair communicator, both
directions) or one per rank (``per="rank"``: eager init). The k-th send from A to B and the k-th receive B posts
from A complete together when both are at the head of their streams (first in, first out, no tags; NCCL's
ncclSend/ncclRecv are "blocking for the GPU"). Raises ScheduleError when the model hangs or a receive would get
another message. Conservative: NCCL may finish a small send into its own buffers before the receiver arrives.

Planted lowerings (same compute order, other receive placements):
* ``lower_at_consumer``: each receive right before the action that consumes it (the course's in-order transport
  before the lowering): the fewest buffers, but a receiver may match a peer's messages out of send order;
* ``lower_fifo_only``: receives in each peer's send order, as late as possible, but the pair's two directions not
  kept in one order (rule 3 of ``labs.schedules.lower`` left out);
* ``lower_up_front``: every receive of the step posted at its start (the tagged transport before): O(M) buffers.
"""
from __future__ import annotations

from labs.schedules import RECV, SEND, Comm, ScheduleError, lower, message_order, parse, producer, shape, stage_owners


def run_streams(lowered, per: str = "pair") -> None:
    streams: dict = {}
    computes = []
    for rank, ops in enumerate(lowered):
        computes.append([op for op in ops if not isinstance(op, Comm)])
        for op in ops:
            if isinstance(op, Comm):
                streams.setdefault((rank, op.peer if per == "pair" else None), []).append(op)
    head = {key: 0 for key in streams}
    cursor = [0] * len(lowered)
    done, received = set(), set()
    progress = True
    while progress:
        progress = False
        for rank, acts in enumerate(computes):
            while cursor[rank] < len(acts):
                a = acts[cursor[rank]]
                needs = [op.message for op in lowered[rank] if isinstance(op, Comm) and op.op == RECV and op.action == a]
                if any(m not in received for m in needs):
                    break
                done.add(a)
                cursor[rank] += 1
                progress = True
        for (rank, key), ops in streams.items():
            i = head[(rank, key)]
            if i >= len(ops) or ops[i].op != SEND or ops[i].action not in done:
                continue
            send = ops[i]
            peer_key = (send.peer, rank if per == "pair" else None)
            j, peer_ops = head.get(peer_key, 0), streams.get(peer_key, [])
            if j < len(peer_ops) and peer_ops[j].op == RECV and peer_ops[j].peer == rank:
                if peer_ops[j].message != send.message:
                    raise ScheduleError(f"rank {send.peer} receives the input of {send.message} into the buffer for "
                                        f"{peer_ops[j].message} (first in, first out)")
                received.add(send.message)
                head[(rank, key)] += 1
                head[peer_key] += 1
                progress = True
    blocked = [f"rank {r} stream {k if k is not None else 'all'} at {ops[head[(r, k)]]}"
               for (r, k), ops in streams.items() if head[(r, k)] < len(ops)]
    stuck = [f"rank {r} compute at {acts[cursor[r]]}" for r, acts in enumerate(computes) if cursor[r] < len(acts)]
    if blocked or stuck:
        raise ScheduleError("the ops hang: " + "; ".join(stuck + blocked))


def _lower(schedule, place: str) -> list[list]:
    schedule = parse(schedule)
    _, num_stages, _ = shape(schedule)
    owners, order = stage_owners(schedule), message_order(schedule)
    sends = {op.action: op for ops in lower(schedule) for op in ops if isinstance(op, Comm) and op.op == SEND}
    out = []
    for rank, actions in enumerate(schedule):
        incoming = sorted((order[a], a) for a in actions if producer(a, num_stages) is not None
                          and owners[producer(a, num_stages).stage] != rank)
        peer_of = {a: owners[producer(a, num_stages).stage] for _, a in incoming}
        ops = [Comm(RECV, a, peer_of[a], a) for _, a in incoming] if place == "up_front" else []
        for a in actions:
            if a in peer_of and place != "up_front":
                due = ([x for x in incoming if x[1] == a] if place == "consumer" else
                       [x for x in incoming if peer_of[x[1]] == peer_of[a] and x[0] <= order[a]])
                for x in due:
                    incoming.remove(x)
                    ops.append(Comm(RECV, x[1], peer_of[x[1]], x[1]))
            ops.append(a)
            if a in sends:
                ops.append(sends[a])
        out.append(ops)
    return out


def lower_at_consumer(schedule) -> list[list]:
    return _lower(schedule, "consumer")


def lower_fifo_only(schedule) -> list[list]:
    return _lower(schedule, "fifo")


def lower_up_front(schedule) -> list[list]:
    return _lower(schedule, "up_front")
