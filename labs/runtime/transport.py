"""How one rank's pipeline messages travel during a step: ``Transport``, tagged or in order, costed, recorded.

``Transport`` walks this rank's **lowered list** (``labs.schedules.lowering.lower``: the compute actions with
explicit sends and receives), the same way whichever matching the backend uses (``tagged`` chooses, ``uses_tags``):

* a **receive is posted at its place in the lowered list**, never for the whole step up front: right before the
  action that consumes it, or earlier only where the lowering needs it (the same peer sends an earlier message this
  rank consumes later, or the pair's two directions must keep one order). The bound: the receives posted and not
  yet consumed on a rank are at most ``receive_buffers_peak(lower(schedule))`` (1 per rank for GPipe, 1F1B and
  ZB-H1; at most 3 for any generator at P <= 4), the same at every M;
* a **send** is issued right after the action that produced its tensor (non-blocking), and the transport drops its
  reference to the payload **when the send completes** (gloo completes a send once the receiver has posted the
  matching receive), not at the end of the step. The payload is the tensor itself (no copy): a forward's output is
  also what autograd keeps, a gradient lives only until its send completes;
* **flow control**: a rank has at most ``send_window`` sends to one peer unfinished (``labs.schedules.flow``: the
  smallest window with which the schedule finishes, plus one so that a receiver late by less than one action never
  stalls its sender: 2 for every generator). Without it a sender that runs ahead of its receiver (GPipe's last rank
  through the backward, unpaced) held one payload per message it was ahead, growing with M;
* **tagged** (gloo): each message carries a tag naming it, a safety net that turns a lowering bug into a hang rather
  than wrong data. **In order** (NCCL ignores tags; ``transport="in_order"`` emulates it on gloo): messages between
  two ranks match first in, first out, which the lowering makes right for every schedule ``validate`` accepts
  (``labs.schedules.check_in_order`` guards it before any process starts).

**The boundary is checked where it is produced**: a tensor whose shape or dtype is not the model's
``boundary_shape`` (float32) raises ModelError on the sending rank, naming the stage, the shape it produced and the
shape the next stage expects, before it travels (a smaller tensor would otherwise land silently in a larger buffer).

**Times.** The sender records when it sent each message (``RankTrace.send_times_s``); the receiver records when it
needed and had it (``labs.timeline.Message``); ``Trace`` joins the two. **A network** (``labs.timeline.Network``)
makes every message pay its link's cost where it is received: the receiver sleeps until the message's arrival, one
message at a time per link, the simulator's rule; then the send time travels with the payload (8 bytes appended,
never counted as data). All ranks read one clock (``perf_counter`` on one machine).

**Blocking** (``blocking=True``): each receive is a blocking receive when its action comes and each send a blocking
send right after its action, in action order, as a naive hand-written pipeline would do, without the lowering. A
schedule that the validator accepts (it assumes non-blocking sends) can then deadlock for real: rank 0 blocked
sending 0F1 while rank 1 is blocked sending 1B0. ``labs.runtime.deadlock`` finds such a cycle within about 2 s and
raises ``Deadlock`` naming it. In order, blocking also needs each rank to consume a peer's messages in send order
(``labs.schedules.check_blocking_in_order``, checked before any process starts).
"""
from __future__ import annotations

import functools
import math
import queue
import threading
import time

import torch
import torch.distributed as dist

from ..errors import InputError
from ..schedules import FORWARD, RECV, SEND, Action, Comm, backward_kinds, consumer, input_source, lower
from ..schedules import send_window as _smallest_window
from ..timeline.trace import Message
from .boundary import check_message
from .deadlock import WaitBoard
from .launcher import report
from .ledger import label, unlabel
from .pacing import sleep_until

__all__ = ["Transport", "lowered", "send_window", "uses_tags"]

_STAMP_BYTES = 8  # with a network: a float64 send time appended to every payload


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


@functools.lru_cache(maxsize=8)
def _lowered(schedule: tuple) -> list:
    return lower([list(actions) for actions in schedule])


def lowered(schedule) -> list:
    """``labs.schedules.lower(schedule)``, computed once per schedule in this process (every step walks the same
    lists); per pipeline rank, the actions with their sends and receives."""
    return _lowered(tuple(tuple(actions) for actions in schedule))


@functools.lru_cache(maxsize=8)
def _window(schedule: tuple) -> int:
    return _smallest_window(_lowered(schedule)) + 1


def send_window(schedule) -> int:
    """The most sends a rank may have unfinished towards one peer while it runs ``schedule``: the smallest window with
    which the lowered lists finish (``labs.schedules.flow.send_window``) plus one of slack for timing noise."""
    return _window(tuple(tuple(actions) for actions in schedule))


class _Completions:
    """Drops each send's payload the moment its send completes.

    gloo's send cannot be polled (``is_completed()`` stays False until someone calls ``wait()``, measured with torch
    2.13), so one helper thread per destination waits on that destination's sends in the order they were issued
    (``Work.wait`` releases the GIL) and lets go of each payload as its send returns. The lowering posts a pair's
    receives in send order, so waiting in that order releases every payload as soon as it can be released.
    """

    def __init__(self, window: int | None = None):
        self.queues: dict = {}
        self.threads: list = []
        self.errors: list = []
        self.window = window
        self.slots: dict[int, threading.Semaphore] = {}

    def reserve(self, destination: int, waiting_for: str) -> None:
        """Before a send to ``destination``: wait until fewer than ``window`` earlier sends to it are unfinished."""
        if self.window is None:
            return
        slots = self.slots.setdefault(destination, threading.Semaphore(self.window))
        if not slots.acquire(blocking=False):
            report(waiting_for)
            slots.acquire()

    def add(self, destination: int, payload: torch.Tensor, work) -> None:
        if destination not in self.queues:
            self.queues[destination] = queue.SimpleQueue()
            thread = threading.Thread(target=self._complete, args=(self.queues[destination], destination), daemon=True,
                                      name=f"labs-sends-to-{destination}")
            thread.start()
            self.threads.append(thread)
        self.queues[destination].put((payload, work))

    def _complete(self, sends, destination: int) -> None:
        while (item := sends.get()) is not None:
            payload, work = item
            del item
            try:
                work.wait()
            except BaseException as error:  # noqa: BLE001 - re-raised by finish() on the rank's own thread
                self.errors.append(error)
            unlabel(payload, "communication")
            if self.window is not None:
                self.slots[destination].release()
            del payload, work  # the transport's last reference: the storage returns to the allocator here

    def finish(self) -> None:
        """Wait for every send; re-raise the first failed send's error."""
        for sends in self.queues.values():
            sends.put(None)
        for thread in self.threads:
            thread.join()
        self.queues.clear()
        self.threads.clear()
        if self.errors:
            raise self.errors[0]


class Transport:
    """The messages of one step on one rank: receives and sends placed by the lowering, byte counts and records.

    ``ops``: this pipeline rank's lowered list (``lower(schedule)[pipeline_rank]``); ``peers``: stage -> the global
    rank holding it for this rank (its replica and tensor-parallel rank); ``boundary_shape``: the shape of every
    message's tensor (float32); ``trace``: the ``RankTrace`` the counts and records go to; ``network``: a
    ``Network`` whose link costs every message pays (None: as fast as the machine allows); ``blocking``: blocking
    send/recv in action order; ``window``: the most unfinished sends to one peer (``send_window``; None: no cap). The step calls ``begin(action)`` before each action, ``receive``/``send`` inside it
    and ``finish()`` at the end.
    """

    def __init__(self, rank: int, ops: list, peers: dict, num_stages: int, M: int, boundary_shape: tuple,
                 device: str, trace, tagged: bool, network=None, blocking: bool = False, window: int | None = None):
        self.rank, self.ops, self.peers, self.num_stages, self.M = rank, list(ops), peers, num_stages, M
        self.shape, self.device, self.trace, self.tagged = tuple(boundary_shape), device, trace, tagged
        self.network, self.blocking = network, blocking
        self.via_cpu = dist.get_backend() == "gloo" and device != "cpu"
        self.cursor = 0  # the next op of ``ops`` to issue
        self.local: dict = {}  # consuming action -> tensor, for messages between two stages of this rank
        self.pending: dict = {}  # consuming action -> (buffer, work): receives posted, not yet consumed
        self.completions = _Completions(window)
        self.link_free: dict[int, float] = {}  # source rank -> when its link to this rank is free again
        self.board = WaitBoard(rank, dist.get_world_size()) if blocking else None
        # each send's message, named by its consumer as the lowering names it (I or B on the other stage); between
        # two stages of this rank: the consumer's kind as this rank's own list runs it
        self.kinds = backward_kinds([[op for op in self.ops if not isinstance(op, Comm)]])
        self.messages = {op.action: op.message for op in self.ops if isinstance(op, Comm) and op.op == SEND}

    def _tag(self, message: Action) -> int:
        """A tag naming a message by the action that consumes it (0 when messages match in order)."""
        return (message.stage * 2 + (message.kind != FORWARD)) * self.M + message.microbatch if self.tagged else 0

    def _buffer(self) -> torch.Tensor:
        extra = _STAMP_BYTES // 4 if self.network is not None else 0
        return torch.empty(math.prod(self.shape) + extra if extra else self.shape,
                           device="cpu" if self.via_cpu or self.device == "cpu" else self.device)

    def _issue_until(self, action: Action, send: bool = False) -> None:
        """Post the lowered list's receives up to ``action`` (compute), or up to its SEND when ``send``."""
        stop = f"{action}'s send" if send else action
        while self.cursor < len(self.ops):
            op = self.ops[self.cursor]
            self.cursor += 1
            if (op.op == SEND and op.action == action if send and isinstance(op, Comm) else op == action):
                return
            if not (isinstance(op, Comm) and op.op == RECV):
                raise RuntimeError(f"rank {self.rank}'s lowered list reaches {op} before {stop}: the runtime and "
                                   f"labs.schedules.lower disagree")
            source = self.peers[input_source(op.action, self.num_stages)]
            buffer = label(self._buffer(), "communication")
            self.pending[op.action] = (buffer, dist.irecv(buffer, source, tag=self._tag(op.action)))
        raise RuntimeError(f"{stop} is not in rank {self.rank}'s lowered list")

    def begin(self, action: Action) -> None:
        """Before ``action`` runs: post the receives the lowered list places before it."""
        if not self.blocking:
            self._issue_until(action)

    def receive(self, action: Action) -> torch.Tensor:
        """The tensor ``action`` consumes (an activation for F, a gradient for I or B), once it has arrived and paid its
        link's cost; recorded as a ``Message`` in the trace."""
        if action in self.local:
            return self.local.pop(action)
        source = self.peers[input_source(action, self.num_stages)]
        needed = time.perf_counter()
        if self.blocking:
            buffer = label(self._buffer(), "communication")
            report(f"at {action}: blocked receiving from rank {source}")
            self.board.wait(dist.irecv(buffer, source, tag=self._tag(action)), "recv", source, action)
        else:
            if action not in self.pending:
                raise RuntimeError(f"{action}'s receive was never posted: call begin({action}) first")
            buffer, work = self.pending.pop(action)
            work.wait()
        unlabel(buffer, "communication")  # from here on it is the consumer's input
        sent = math.nan  # filled from the sender's record (labs.timeline.trace.Trace) unless it travelled along
        data = buffer
        if self.network is not None:
            sent = float(buffer[-2:].cpu().view(torch.float64)[0])
            data = buffer[:-2].view(self.shape).clone()  # its own storage: saved bytes count the data, not the stamp
        size_bytes = data.numel() * data.element_size()
        if self.network is not None:  # one message at a time per link, in the order this rank receives them
            arrives, self.link_free[source] = self.network.deliver(source, self.rank, size_bytes, sent,
                                                                   self.link_free.get(source, sent))
            sleep_until(arrives)
        received = time.perf_counter()
        self.trace.wait_time_s += received - needed
        self.trace.bytes_received += size_bytes
        self.trace.messages_received += 1
        self.trace.messages.append(Message(source, self.rank, action.kind, action.stage, action.microbatch,
                                           size_bytes, sent, needed, received))
        return data.to(self.device)

    def send(self, tensor: torch.Tensor, action: Action) -> None:
        """Send ``tensor``, the output of ``action``, to the stage that consumes it (kept locally when that stage is
        on this rank); non-blocking unless the transport blocks. Raises ModelError when ``tensor`` is not the
        model's declared boundary (shape, float32)."""
        message = self.messages.get(action) or consumer(action, self.num_stages, self.kinds)
        check_message(tensor, self.shape, action.stage, message.stage,
                      "an activation" if action.kind == FORWARD else "a gradient", self.rank, action.microbatch)
        destination = self.peers[message.stage]
        if destination == self.rank:
            self.local[message] = tensor.detach().clone()
            return
        if not self.blocking:  # receives placed before this send first, then a slot in the window: a payload waiting
            self._issue_until(action, send=True)  # for its slot is still the action's output, not a message yet
            self.completions.reserve(destination, f"{action} done; waiting for rank {destination} to take an earlier "
                                                  f"message before sending it (send window {self.completions.window})")
        payload = tensor.detach().cpu() if self.via_cpu else tensor.detach().contiguous()
        sent = time.perf_counter()
        if self.network is not None:
            stamp = torch.tensor([sent], dtype=torch.float64).view(payload.dtype).to(payload.device)
            payload = torch.cat([payload.reshape(-1), stamp])
        label(payload, "communication")
        self.trace.bytes_sent += tensor.numel() * tensor.element_size()
        self.trace.messages_sent += 1
        self.trace.send_times_s[(destination, message.kind, message.stage, message.microbatch)] = sent
        if self.blocking:
            report(f"{action} done; blocked sending it to rank {destination} until rank {destination} receives it")
            self.board.wait(dist.isend(payload, destination, tag=self._tag(message)), "send", destination, message)
            unlabel(payload, "communication")
            return
        self.completions.add(destination, payload, dist.isend(payload, destination, tag=self._tag(message)))

    def finish(self) -> None:
        """Wait until every non-blocking send of the step has been received; RuntimeError if the lowered list has
        ops left or a posted receive was never consumed (a runtime bug, not a schedule's)."""
        left = self.ops[self.cursor:] if not self.blocking else []
        if left or self.pending:
            raise RuntimeError(f"rank {self.rank} ends its step with ops not issued {left} or receives not consumed "
                               f"{sorted(self.pending)}")
        self.completions.finish()

