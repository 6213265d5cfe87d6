"""How one rank's pipeline messages travel during a step: ``Transport``, tagged or in order, costed, recorded.

``Transport`` is what ``labs.runtime.step`` uses for one step. Which stage an action's output goes to, and whose
message an action consumes, come from ``labs.schedules.lowering`` (as in the simulator). Messages are matched in
one of two ways (``tagged`` chooses, see ``uses_tags``):

* **tagged** (gloo): every receive of the step is posted up front with a tag naming its action, so messages match
  whatever order they arrive in, and any schedule that ``validate`` accepts runs correctly.
* **in order** (NCCL ignores tags): a receive is posted when its action needs it, and the messages between two ranks
  match first in, first out. That is correct only if each receiver consumes a peer's messages in the order the peer
  sends them: ``labs.schedules.check_in_order`` checks exactly that before any process starts; ``run_pipeline`` calls
  it whenever the transport is in order (on NCCL, or forced with ``transport="in_order"`` to emulate NCCL on gloo).

**Every message carries the time it was sent** (8 bytes appended to the payload, never counted as data) and is
recorded on the receiving rank as a ``labs.timeline.Message`` (which link, bytes, when it was sent, when the receiver
asked for it, when it had it), for the trace's analysis and the Perfetto export.

**A network** (``labs.timeline.Network``) makes every message pay its link's cost, applied where it is received:
the receiver sleeps until the message's arrival if the data came sooner, one message at a time per link. That is
exactly the simulator's rule (an action starts at ``max(rank free, producer's end + link)``), so a measured and a
simulated timeline with the same network can be compared. All ranks read one clock (``perf_counter`` on one
machine); across machines the stamps disagree, so use link costs on one machine.

**Blocking** (``blocking=True``): each receive is a ``recv`` posted when its action comes, and each send a ``send``
that returns only once the other rank has received it, both in action order, as a naive hand-written pipeline would
do. A schedule that the validator accepts (it assumes non-blocking sends) can then deadlock for real: rank 0 blocked
sending 0F1 while rank 1 is blocked sending 1B0. The launcher's timeout ends it and prints each rank's last report
("0F1 done; blocked sending it to rank 1 until rank 1 receives it").
"""
from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from ..errors import InputError
from ..schedules import GRADIENT_KINDS, Action, backward_kinds, consumer, input_source
from ..timeline.trace import Message
from .launcher import report
from .pacing import sleep_until

__all__ = ["Transport", "uses_tags"]

_STAMP_BYTES = 8  # a float64 send time appended to every payload


def uses_tags(transport: str, backend: str) -> bool:
    """Whether messages are matched by tag (any order) rather than first in, first out.

    ``transport``: "auto" (tags on gloo, in order on NCCL), "tagged" or "in_order"; InputError otherwise, or for
    "tagged" on NCCL (which ignores tags).
    """
    if transport not in ("auto", "tagged", "in_order"):
        raise InputError(f"transport is 'auto', 'tagged' or 'in_order', got {transport!r}")
    if transport == "auto":
        return backend != "nccl"
    if transport == "tagged" and backend == "nccl":
        raise InputError("NCCL ignores tags: use transport='in_order' or 'auto' there")
    return transport == "tagged"


class Transport:
    """The messages of one step on one rank: receives (tagged or in order), sends, byte counts and records.

    ``actions``: this rank's action list; ``peers``: stage -> the global rank holding it for this rank (its
    replica and tensor-parallel rank); ``boundary_shape``: the shape of every message's tensor (float32);
    ``trace``: the ``RankTrace`` the counts and ``Message`` records go to; ``network``: a ``Network`` whose link
    costs every message pays (None: as fast as the machine allows); ``blocking``: blocking send/recv in action order.
    """

    def __init__(self, rank: int, actions: list, peers: dict, num_stages: int, M: int, boundary_shape: tuple,
                 device: str, trace, tagged: bool, network=None, blocking: bool = False):
        self.rank, self.peers, self.num_stages, self.M = rank, peers, num_stages, M
        self.shape, self.device, self.trace, self.tagged = tuple(boundary_shape), device, trace, tagged
        self.network, self.blocking = network, blocking
        self.via_cpu = dist.get_backend() == "gloo" and device != "cpu"
        self.local: dict = {}  # consuming action -> tensor, for messages between two stages of this rank
        self.pending: dict = {}  # consuming action -> (buffer, request) posted up front
        self.sends: list = []
        self.link_free: dict[int, float] = {}  # source rank -> when its link to this rank is free again
        self.kinds = backward_kinds([actions])  # I or B per (stage, micro-batch) here: names a local message's consumer
        if self.tagged:
            for action in actions:
                source = input_source(action, num_stages)
                if source is not None and peers[source] != rank:
                    self.pending[action] = self._post(action)

    def _tag(self, message: Action) -> int:
        """A tag naming a message by the action that consumes it."""
        return (message.stage * 2 + (message.kind in GRADIENT_KINDS)) * self.M + message.microbatch

    def _post(self, action: Action):
        """(a buffer for ``action``'s input and its stamp, the posted irecv or None when receives block)."""
        extra = _STAMP_BYTES // torch.empty((), dtype=torch.float32).element_size()
        buffer = torch.empty(math.prod(self.shape) + extra,
                             device="cpu" if self.via_cpu or self.device == "cpu" else self.device)
        if self.blocking:
            return buffer, None  # received in action order, when the action comes
        source = self.peers[input_source(action, self.num_stages)]
        return buffer, dist.irecv(buffer, source, tag=self._tag(action) if self.tagged else 0)

    def receive(self, action: Action) -> torch.Tensor:
        """The tensor ``action`` consumes (an activation for F, a gradient for I or B), once it has arrived and paid its
        link's cost; recorded as a ``Message`` in the trace."""
        if action in self.local:
            return self.local.pop(action)
        src_rank = self.peers[input_source(action, self.num_stages)]
        buffer, request = self.pending.pop(action) if action in self.pending else self._post(action)
        needed = time.perf_counter()
        if request is None:
            report(f"at {action}: blocked receiving from rank {src_rank}")
            dist.recv(buffer, src_rank, tag=self._tag(action) if self.tagged else 0)
        else:
            request.wait()
        extra = _STAMP_BYTES // buffer.element_size()
        sent = float(buffer[-extra:].cpu().view(torch.float64)[0])
        data = buffer[:-extra].view(self.shape).clone()  # its own storage: saved bytes count the data, not the stamp
        size_bytes = data.numel() * data.element_size()
        if self.network is not None:  # one message at a time per link, in the order this rank receives them
            arrives, self.link_free[src_rank] = self.network.deliver(src_rank, self.rank, size_bytes, sent,
                                                                     self.link_free.get(src_rank, sent))
            sleep_until(arrives)
        received = time.perf_counter()
        self.trace.wait_time_s += received - needed
        self.trace.bytes_received += size_bytes
        self.trace.messages_received += 1
        self.trace.messages.append(Message(src_rank, self.rank, action.kind, action.stage, action.microbatch,
                                           size_bytes, sent, needed, received))
        return data.to(self.device)

    def send(self, tensor: torch.Tensor, action: Action) -> None:
        """Send ``tensor``, the output of ``action``, to the stage that consumes it (kept locally when that stage is
        on this rank); non-blocking unless the transport blocks."""
        message = consumer(action, self.num_stages, self.kinds)
        dst = self.peers[message.stage]
        if dst == self.rank:
            self.local[message] = tensor.detach().clone()
            return
        data = tensor.detach().cpu() if self.via_cpu else tensor.detach()
        stamp = torch.tensor([time.perf_counter()], dtype=torch.float64).view(data.dtype).to(data.device)
        payload = torch.cat([data.reshape(-1), stamp])
        tag = self._tag(message) if self.tagged else 0
        self.trace.bytes_sent += data.numel() * data.element_size()
        self.trace.messages_sent += 1
        if self.blocking:
            report(f"{action} done; blocked sending it to rank {dst} until rank {dst} receives it")
            dist.send(payload, dst, tag=tag)
        else:
            self.sends.append((payload, dist.isend(payload, dst, tag=tag)))

    def finish(self) -> None:
        """Wait until every non-blocking send of the step has been received."""
        for _, request in self.sends:
            request.wait()
        self.sends.clear()
