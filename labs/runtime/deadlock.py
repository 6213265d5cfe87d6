"""Blocking sends that wait on each other in a cycle: found within seconds and named, instead of a timeout.

A blocking ``send`` returns only once the other rank has posted the matching receive (gloo's rendezvous; NCCL's
"blocking for the GPU"). When two ranks each block in a send to the other (1F1B's steady state: rank r sends F(m+1)
while rank r+1 sends B(m) back), neither ever reaches its receive: a deadlock that otherwise ends only at the
launcher's timeout, with nothing saying "deadlock". Here every blocking op is watched:

* ``WaitBoard.wait(work, kind, peer, message)`` stands for ``work.wait()``: it writes this rank's state ("blocked
  sending MESSAGE to PEER", with a sequence number) to the process group's key-value store, waits for the op on a
  helper thread, and meanwhile reads every rank's state twice a second;
* ``find_deadlock(states, held_s, hold_s)`` (pure): rank r waits on its peer p unless p is blocked in the matching op
  towards r (then the transfer is under way). A cycle of such waits, each held at least ``hold_s`` seconds by this
  rank's clock, can never clear: it is returned, and ``wait`` raises ``Deadlock`` naming who waits on whom.

Why ``hold_s = 2``: a blocking op that waits on a rank which is computing is no deadlock, and such a chain ends at
that rank; a cycle of blocked ranks can only clear if one of its waits is a transfer in progress, which is excluded.
So the hold only absorbs the instant two ranks enter their ops: 2 s is about a thousand times a message's latency
here and well under the launcher's default timeout.
"""
from __future__ import annotations

import threading
import time

import torch.distributed as dist

from ..errors import RunFailure

__all__ = ["Deadlock", "WaitBoard", "find_deadlock"]

_KEY = "labs/blocked/{}"


class Deadlock(RunFailure, RuntimeError):
    """Ranks blocked in a cycle of sends or receives that can never complete; ``cycle`` holds
    (rank, kind, peer, message, seconds) for each rank of it."""

    def __init__(self, cycle: list):
        self.cycle = cycle
        ranks = " -> ".join(str(rank) for rank, *_ in cycle + cycle[:1])
        lines = "\n".join(f"  rank {rank} has waited {held:.1f} s to "
                          + (f"send the input of {message} to" if kind == "send" else f"receive the input of {message} from")
                          + f" rank {peer}, which is itself blocked" for rank, kind, peer, message, held in cycle)
        super().__init__(
            f"deadlock: ranks {ranks} wait on each other in a cycle\n{lines}\n"
            f"A blocking send returns only once the other rank has posted the matching receive, so ranks that all "
            f"send to each other wait forever. Send without blocking (isend; blocking=False), let one rank of each "
            f"pair receive first, or pair the send and the receive in one batch_isend_irecv.")


def find_deadlock(states: dict, held_s: dict, hold_s: float = 2.0) -> list | None:
    """A cycle of blocked ranks that can never go on, or None.

    ``states``: rank -> (kind "send"/"recv", peer, message) for the ranks blocked now (others are running);
    ``held_s``: rank -> seconds that state has been seen unchanged. Returns [(rank, kind, peer, message, seconds)]
    in wait order, starting at the smallest rank of the cycle.
    """
    complement = {"send": "recv", "recv": "send"}

    def waits_on(rank):
        if rank not in states or held_s.get(rank, 0.0) < hold_s:
            return None
        kind, peer, message = states[rank]
        if states.get(peer) == (complement[kind], rank, message):
            return None  # the other side is in the matching op: a transfer under way, not a wait
        return peer

    for start in sorted(states):
        path, rank = [], start
        while rank is not None and rank not in path:
            path.append(rank)
            rank = waits_on(rank)
        if rank is not None:  # came back to a rank of the path: the cycle is path[path.index(rank):]
            cycle = path[path.index(rank):]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            return [(r, *states[r], held_s[r]) for r in cycle]
    return None


class WaitBoard:
    """This rank's blocking ops, watched for a cycle of waits through the default process group's store.

    ``store``: a ``torch.distributed.Store`` every rank shares (default: the default group's); ``world_size`` ranks.
    Without a store (None and none found), ``wait`` is a plain ``work.wait()``.
    """

    def __init__(self, rank: int, world_size: int, store=None, hold_s: float = 2.0, poll_s: float = 0.25):
        self.rank, self.world_size, self.hold_s, self.poll_s = rank, world_size, hold_s, poll_s
        if store is None:
            try:
                store = dist.distributed_c10d._get_default_store()
            except (AttributeError, RuntimeError, ValueError):  # no default group, or a torch without it
                store = None
        self.store = store
        self.sequence = 0

    def _write(self, text: str) -> None:
        self.store.set(_KEY.format(self.rank), text)

    def _read(self) -> dict:
        """rank -> (sequence, kind, peer, message) of every rank blocked now."""
        states = {}
        for rank in range(self.world_size):
            key = _KEY.format(rank)
            if not self.store.check([key]):
                continue
            fields = self.store.get(key).decode().split()
            if len(fields) == 4:
                states[rank] = (int(fields[0]), fields[1], int(fields[2]), fields[3])
        return states

    def wait(self, work, kind: str, peer: int, message) -> None:
        """``work.wait()`` for a blocking ``kind`` ("send" or "recv") with rank ``peer`` carrying ``message``'s
        input; raises ``Deadlock`` when this rank and others wait on each other in a cycle for ``hold_s``."""
        if self.store is None:
            work.wait()
            return
        self.sequence += 1
        self._write(f"{self.sequence} {kind} {peer} {message}")
        done, failure = threading.Event(), []

        def complete():
            try:
                work.wait()
            except BaseException as error:  # noqa: BLE001 - re-raised on the rank's own thread
                failure.append(error)
            done.set()

        threading.Thread(target=complete, daemon=True, name="labs-blocking-wait").start()
        first_seen: dict = {}
        while not done.wait(self.poll_s):
            now = time.monotonic()
            states = self._read()
            for rank, state in states.items():
                if first_seen.get(rank, (None,))[0] != state:
                    first_seen[rank] = (state, now)
            held = {rank: now - first_seen[rank][1] for rank in states}
            cycle = find_deadlock({rank: state[1:] for rank, state in states.items()}, held, self.hold_s)
            if cycle is not None:
                raise Deadlock(cycle)
        self._write("running")
        if failure:
            raise failure[0]
