"""What a message between two ranks costs, and how the runtime sends it: costed links and blocking send/recv.

    net = labs.Network(labs.Link(latency_ms=1), slow={(1, 2): labs.Link(latency_ms=30, bandwidth_mb_s=5)})
    run = labs.run_pipeline("1f1b", microbatches=8, network=net)     # every message pays its link's cost
    run.simulated                                                    # the same schedule, same costs, same links
    labs.run_pipeline(schedule, blocking=True, timeout=5)            # send/recv in action order (can deadlock)

**A link** costs ``latency + bytes / bandwidth`` per message, and carries one message at a time in each direction (a
message waits for the one before it to finish its transfer; latencies overlap). A ``Network`` gives every pair of
ranks the ``default`` link, except the pairs named in ``slow`` (a pair is a cable: both directions). The cost is
applied where the message is received: every message carries the time it was sent (8 bytes appended to the payload,
never counted as data), and the receiver sleeps until the message's arrival if the data came sooner. That is exactly the simulator's rule (an action
starts at ``max(rank free, producer's end + link)``), so a measured and a simulated timeline with the same network
can be compared. All ranks read one clock (``perf_counter`` on one machine); across machines the stamps disagree,
so use link costs on one machine.

**Every message is recorded** on the receiving rank as a ``labs.timeline.trace.Message`` (which link, bytes, when it was
sent, when the receiver asked for it, when it had it), for flow arrows in the exported trace and ``labs.timeline.analysis``.

**Blocking transport** (``blocking=True``): each receive is a ``recv`` posted when its action comes, and each send a
``send`` that returns only once the other rank has received it, both in action order, as a naive hand-written
pipeline would do. A schedule that the validator accepts (it assumes non-blocking sends) can then deadlock for real:
rank 0 blocked sending 0F1 while rank 1 is blocked sending 1B0. The launcher's timeout ends it and prints each rank's
last report ("0F1 done; blocked sending it to rank 1 until rank 1 receives it").
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..runtime.launcher import report
from ..runtime.pacing import sleep_until
from ..runtime.transport import Links, _source
from ..schedules import BACKWARD
from ..timeline.trace import Message


@dataclass(frozen=True)
class Link:
    """One cable: ``latency_ms`` per message plus ``bytes / bandwidth`` (``bandwidth_mb_s`` in 10^6 bytes per
    second; None: unlimited)."""

    latency_ms: float = 0.0
    bandwidth_mb_s: float | None = None

    def __post_init__(self):
        if not (isinstance(self.latency_ms, (int, float)) and self.latency_ms >= 0 and math.isfinite(self.latency_ms)):
            raise ValueError(f"Link latency_ms must be a number >= 0, got {self.latency_ms!r}")
        if self.bandwidth_mb_s is not None and not (isinstance(self.bandwidth_mb_s, (int, float))
                                                    and self.bandwidth_mb_s > 0):
            raise ValueError(f"Link bandwidth_mb_s must be a number > 0 (or None for unlimited), "
                             f"got {self.bandwidth_mb_s!r}")

    def transfer(self, nbytes: int) -> float:
        """Seconds the link is busy sending ``nbytes`` (0 with unlimited bandwidth)."""
        return 0.0 if self.bandwidth_mb_s is None else nbytes / (self.bandwidth_mb_s * 1e6)

    def seconds(self, nbytes: int) -> float:
        """Time one message of ``nbytes`` takes on an idle link: latency + bytes / bandwidth."""
        return self.latency_ms / 1000 + self.transfer(nbytes)

    def deliver(self, nbytes: int, sent: float, free: float) -> tuple[float, float]:
        """(when a message sent at ``sent`` arrives, when the link is free again), for a link busy until ``free``.

        A link carries one message at a time: a message waits for the one before it, then occupies the link for
        bytes / bandwidth; the latency (the signal's trip) overlaps with the next message's transfer.
        """
        start = max(sent, free)
        done = start + self.transfer(nbytes)
        return done + self.latency_ms / 1000, done

    @classmethod
    def parse(cls, text: str) -> "Link":
        """``"LATENCY_MS"`` or ``"LATENCY_MS,BANDWIDTH_MB_S"`` (the command line's form), e.g. ``"2,50"``."""
        try:
            parts = [float(x) for x in text.split(",")]
            if len(parts) not in (1, 2):
                raise ValueError
            return cls(parts[0], parts[1] if len(parts) == 2 else None)
        except ValueError:
            raise ValueError(f"a link is LATENCY_MS or LATENCY_MS,BANDWIDTH_MB_S (e.g. 2 or 2,50), got {text!r}")


@dataclass(frozen=True)
class Network:
    """The link between every pair of ranks: ``default``, except the pairs in ``slow`` ({(a, b): Link})."""

    default: Link = field(default_factory=Link)
    slow: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.default, Link):
            raise ValueError(f"Network default must be a labs.Link, got {self.default!r}")
        for pair, link in self.slow.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(r, int) and r >= 0 for r in pair)
                    and pair[0] != pair[1]):
                raise ValueError(f"Network slow links are keyed by a pair of two different ranks, e.g. (1, 2); "
                                 f"got {pair!r}")
            if not isinstance(link, Link):
                raise ValueError(f"Network slow[{pair}] must be a labs.Link, got {link!r}")

    def link(self, src: int, dst: int) -> Link:
        return self.slow.get((src, dst)) or self.slow.get((dst, src)) or self.default

    def seconds(self, src: int, dst: int, nbytes: int) -> float:
        return self.link(src, dst).seconds(nbytes)

    def deliver(self, src: int, dst: int, nbytes: int, sent: float, free: float) -> tuple[float, float]:
        """``Link.deliver`` on the link from ``src`` to ``dst`` (each direction of a cable is its own queue)."""
        return self.link(src, dst).deliver(nbytes, sent, free)

    def check_ranks(self, world_size: int) -> None:
        """Raise ValueError when a slow link names a rank the run does not have."""
        for pair in self.slow:
            if max(pair) >= world_size:
                raise ValueError(f"the network has a slow link {pair} but the run has ranks 0..{world_size - 1}")


def as_network(value) -> Network | None:
    """None, a Link (the same for every pair) or a Network -> a Network or None."""
    if value is None or isinstance(value, Network):
        return value
    if isinstance(value, Link):
        return Network(value)
    raise ValueError(f"network must be a labs.Link, a labs.Network or None, got {value!r}")


def traffic(P: int, M: int, v: int, microbatch_bytes: int) -> tuple[int, int]:
    """(messages, bytes) one training step sends between ranks: every boundary between consecutive stages (v*P - 1 of
    them, stage s on rank s % P) carries each of the M micro-batches twice, its activation forward and its gradient
    back, unless both stages sit on the same rank (P = 1)."""
    crossing = v * P - 1 if P > 1 else 0
    messages = 2 * crossing * M
    return messages, messages * microbatch_bytes


def network_from_text(link: str | None, slow_links: list[str]) -> Network | None:
    """The command line's ``--link MS[,MB/S]`` and ``--slow-link A-B:MS[,MB/S]`` options as a Network (or None)."""
    if link is None and not slow_links:
        return None
    slow = {}
    for text in slow_links:
        try:
            pair, cost = text.split(":")
            a, b = (int(r) for r in pair.split("-"))
        except ValueError:
            raise ValueError(f"--slow-link is A-B:MS[,MB/S], e.g. 1-2:30,5; got {text!r}")
        slow[(a, b)] = Link.parse(cost)
    return Network(Link.parse(link) if link else Link(), slow)


def _stamp_elements(dtype: torch.dtype) -> int:
    size = torch.empty((), dtype=dtype).element_size()
    return 8 // size


@dataclass(frozen=True)
class TransportSpec:
    """How a run's messages travel: through ``network`` (None: as fast as the machine allows), blocking or not.
    A PipelineJob carries it to the ranks; the runtime calls it where it would build its default links."""

    network: Network | None = None
    blocking: bool = False

    def __call__(self, *args) -> "Transport":
        return Transport(self, *args)


class Transport(Links):
    """The runtime's links with a send-time stamp on each message, an optional ``Network`` cost, optional blocking
    send/recv, and a ``Message`` record per received message."""

    def __init__(self, spec: TransportSpec, *args):
        self.network, self.blocking = spec.network, spec.blocking  # before the base class posts its receives
        self.link_free: dict[int, float] = {}  # source rank -> when its link to this rank is free again
        super().__init__(*args)

    def _post(self, action, source):
        extra = _stamp_elements(torch.float32)
        numel = math.prod(self.shape) + extra
        buffer = torch.empty(numel, device="cpu" if self.via_cpu or self.device == "cpu" else self.device)
        tag = self._tag(action.kind, action.stage, action.microbatch) if self.tagged else 0
        if self.blocking:
            return buffer, None  # received in action order, when the action comes
        return buffer, dist.irecv(buffer, self.owners[source], tag=tag)

    def receive(self, action) -> torch.Tensor:
        key = (action.kind, action.stage, action.microbatch)
        if key in self.local:
            return self.local.pop(key)
        source = _source(action, self.stages)
        buffer, request = self.pending.pop(key) if key in self.pending else self._post(action, source)
        needed = time.perf_counter()
        if request is None:
            report(f"at {action}: blocked receiving from rank {self.owners[source]}")
            dist.recv(buffer, self.owners[source], tag=self._tag(*key) if self.tagged else 0)
        else:
            request.wait()
        extra = _stamp_elements(buffer.dtype)
        sent = float(buffer[-extra:].cpu().view(torch.float64)[0])
        data = buffer[:-extra].view(self.shape).clone()  # its own storage: saved bytes count the data, not the stamp
        nbytes = data.numel() * data.element_size()
        src_rank = self.owners[source]
        if self.network is not None:  # one message at a time per link, in the order this rank receives them
            arrives, self.link_free[src_rank] = self.network.deliver(src_rank, self.rank, nbytes, sent,
                                                                     self.link_free.get(src_rank, sent))
            sleep_until(arrives)
        received = time.perf_counter()
        self.trace.wait_time += received - needed
        self.trace.bytes_received += nbytes
        self.trace.messages_received += 1
        self.trace.messages.append(Message(src_rank, self.rank, action.kind, action.stage, action.microbatch,
                                           nbytes, sent, needed, received))
        return data.to(self.device)

    def send(self, tensor: torch.Tensor, kind: str, to_stage: int, microbatch: int) -> None:
        if self.owners[to_stage] == self.rank:
            self.local[(kind, to_stage, microbatch)] = tensor.detach().clone()
            return
        data = tensor.detach().cpu() if self.via_cpu else tensor.detach()
        stamp = torch.tensor([time.perf_counter()], dtype=torch.float64).view(data.dtype).to(data.device)
        payload = torch.cat([data.reshape(-1), stamp])
        dst = self.owners[to_stage]
        tag = self._tag(kind, to_stage, microbatch) if self.tagged else 0
        self.trace.bytes_sent += data.numel() * data.element_size()
        self.trace.messages_sent += 1
        if self.blocking:
            what = f"{to_stage + (1 if kind == BACKWARD else -1)}{kind}{microbatch}"
            report(f"{what} done; blocked sending it to rank {dst} until rank {dst} receives it")
            dist.send(payload, dst, tag=tag)
        else:
            self.sends.append((payload, dist.isend(payload, dst, tag=tag)))
