"""What a pipeline step did, rank by rank: the record a real run returns and the simulator produces.

Each rank keeps one ``Event`` per action (start and end of its compute, in seconds from the step's start, and for a
forward the bytes of activations it saved for the backward) and counts the bytes and messages it sent and received.
A ``Trace`` merges the ranks and answers the questions the course asks: the step time, each rank's idle fraction,
the activations each rank held at its peak, how much moved over the links, and (when the run measured it) the most
memory each rank held at once, from the allocator's view (``RankTrace.memory``, see ``labs.runtime.ledger``). No
torch here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..schedules import BACKWARD, FORWARD, WEIGHT, Action

__all__ = ["Event", "Message", "RankTrace", "Trace"]


@dataclass
class Event:
    """One action's compute on its rank, ``start_s`` to ``end_s`` seconds from the step's start."""

    action: Action
    start_s: float
    end_s: float
    saved_bytes: int = 0  # forward: activations kept for the backward; split B: gradients kept for its W

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Message:
    """One message as its receiver saw it (times on the step's clock, like events): from rank ``src`` to ``dst``,
    the input of action ``stage kind microbatch``; sent when the producer finished, needed when the receiver asked
    for it, received when the receiver had it (after any link cost, see ``labs.timeline.costs``)."""

    src: int
    dst: int
    kind: str
    stage: int
    microbatch: int
    size_bytes: int
    sent_s: float
    needed_s: float
    received_s: float

    @property
    def times_s(self) -> tuple[float, float, float]:
        return self.sent_s, self.needed_s, self.received_s

    @property
    def consumer(self) -> Action:
        """The action that consumed this message (its input)."""
        return Action(self.stage, self.kind, self.microbatch)


@dataclass
class RankTrace:
    """One rank's step: its events, what it sent and received, how long it waited, its all-reduces."""

    rank: int
    events: list[Event] = field(default_factory=list)
    finish_s: float = 0.0  # when the rank was done, its sends delivered
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    wait_time_s: float = 0.0  # time spent blocked on receives
    messages: list[Message] = field(default_factory=list)  # received messages, when the transport records them
    # all-reduces, (kind, start_s, end_s, bytes): "tp" inside a stage (tensor parallel), "dp" across replicas
    collectives: list = field(default_factory=list)
    # when this rank sent each message: (receiving rank, kind, stage, micro-batch of the consumer) -> seconds
    send_times_s: dict = field(default_factory=dict)
    # live tensor bytes over a step, measured (labs.runtime.ledger.MemoryLedger.summary()); None: not measured
    memory: dict | None = None

    @property
    def peak_memory_bytes(self) -> int | None:
        """The most live tensor bytes this rank held at once over a step (parameters, gradients, activations,
        communication buffers, data and temporaries together), from the allocator's view; None if not measured."""
        return None if self.memory is None else self.memory["peak_bytes"]

    def collective_bytes(self, kind: str) -> int:
        return sum(size for k, _, _, size in self.collectives if k == kind)

    def collective_time_s(self, kind: str) -> float:
        return sum(end - start for k, start, end, _ in self.collectives if k == kind)

    @property
    def busy_s(self) -> float:
        return sum(e.duration_s for e in self.events)

    def activations_over_time(self) -> list[tuple[float, int, int]]:
        """(time in s, micro-batches held, bytes held) after each action: a forward adds one, its last backward step
        (B, or W where the schedule splits the backward) releases it; a split B adds the gradients it keeps for W."""
        releases_on_w = {(e.action.stage, e.action.microbatch) for e in self.events if e.action.kind == WEIGHT}
        held_bytes: dict[tuple[int, int], int] = {}
        points = [(0.0, 0, 0)]
        for e in sorted(self.events, key=lambda e: e.start_s):
            key = (e.action.stage, e.action.microbatch)
            if e.action.kind == FORWARD:
                held_bytes[key] = e.saved_bytes
            elif (e.action.kind == WEIGHT) or (e.action.kind == BACKWARD and key not in releases_on_w):
                held_bytes.pop(key, None)
            elif key in held_bytes:  # a B whose W comes later: the micro-batch stays, plus what W needs
                held_bytes[key] += e.saved_bytes
            points.append((e.end_s, len(held_bytes), sum(held_bytes.values())))
        return points

    @property
    def peak_activations(self) -> int:
        return max(count for _, count, _ in self.activations_over_time())

    @property
    def peak_activation_bytes(self) -> int:
        return max(size for _, _, size in self.activations_over_time())


@dataclass
class Trace:
    """All ranks of one step (a real run's or the simulator's)."""

    ranks: list[RankTrace]

    def __post_init__(self):
        """Give each received message the time its sender sent it (the sender's record), where it did not travel
        with the message."""
        senders = {r.rank: r for r in self.ranks}
        for r in self.ranks:
            for m in r.messages:
                if math.isnan(m.sent_s) and m.src in senders:
                    m.sent_s = senders[m.src].send_times_s.get((m.dst, m.kind, m.stage, m.microbatch), m.sent_s)

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def events(self) -> list[list[Event]]:
        return [r.events for r in self.ranks]

    @property
    def step_time_s(self) -> float:
        return max(max(r.finish_s, max((e.end_s for e in r.events), default=0.0)) for r in self.ranks)

    def idle_fraction_of(self, rank: int) -> float:
        return 1.0 - self.ranks[rank].busy_s / self.step_time_s

    @property
    def idle_fractions(self) -> list[float]:
        return [self.idle_fraction_of(r) for r in range(self.world_size)]

    @property
    def idle_fraction(self) -> float:
        """The measured bubble as a share of the step: idle rank-seconds over all rank-seconds."""
        return 1.0 - sum(r.busy_s for r in self.ranks) / (self.world_size * self.step_time_s)

    @property
    def peak_activations(self) -> list[int]:
        return [r.peak_activations for r in self.ranks]

    @property
    def peak_activation_bytes(self) -> list[int]:
        return [r.peak_activation_bytes for r in self.ranks]

    @property
    def peak_memory_bytes(self) -> list:
        """Per rank, the measured peak of live tensor bytes over a step (None where not measured)."""
        return [r.peak_memory_bytes for r in self.ranks]

    @property
    def memory(self) -> list:
        """Per rank, the measured memory (``RankTrace.memory``): the peak, the split at the peak and each part's own
        peak, in bytes (None where not measured)."""
        return [r.memory for r in self.ranks]

    @property
    def bytes_moved(self) -> int:
        return sum(r.bytes_sent for r in self.ranks)

    @property
    def messages(self) -> int:
        return sum(r.messages_sent for r in self.ranks)

    @property
    def traffic(self) -> dict:
        """Bytes and rank-seconds of the messages between stages and of the all-reduces inside a stage (tensor
        parallel) and across replicas (data parallel); all-reduce bytes are the payload each rank contributes."""
        return {"bytes_between_stages": self.bytes_moved, "messages_between_stages": self.messages,
                "wait_between_stages_s": sum(r.wait_time_s for r in self.ranks),
                "bytes_inside_stages": sum(r.collective_bytes("tp") for r in self.ranks),
                "all_reduces_inside_stages": sum(k == "tp" for r in self.ranks for k, *_ in r.collectives),
                "time_inside_stages_s": sum(r.collective_time_s("tp") for r in self.ranks),
                "bytes_across_replicas": sum(r.collective_bytes("dp") for r in self.ranks),
                "time_across_replicas_s": sum(r.collective_time_s("dp") for r in self.ranks)}

    def summary(self) -> dict:
        return {"step_time_s": self.step_time_s, "idle_fraction": self.idle_fraction,
                "idle_fraction_per_rank": self.idle_fractions, "peak_activations": self.peak_activations,
                "peak_activation_bytes": self.peak_activation_bytes, "peak_memory_bytes": self.peak_memory_bytes,
                "memory": self.memory, "bytes_moved": self.bytes_moved, "messages": self.messages}
