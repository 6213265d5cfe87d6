"""What the simulator charges: seconds per action (``Costs``) and per message (``Link``, ``Network``).

    costs = Costs(forward_s=0.010, backward_s=0.020, link_s=0.001)    # one stage's F and B; every message 1 ms
    costs = Costs([0.01, 0.03], [0.02, 0.06])                         # per stage: stage 1 three times slower
    net = Network(Link(latency_ms=1), slow={(1, 2): Link(latency_ms=30, bandwidth_mb_s=5)})
    costs = Costs(0.010, 0.020, network=net, message_bytes=4096)      # every message pays its link's cost

**A link** costs ``latency + bytes / bandwidth`` per message and carries one message at a time in each direction (a
message waits for the one before it to finish its transfer; latencies overlap). A ``Network`` gives every pair of
ranks the ``default`` link, except the pairs named in ``slow`` (a pair is a cable: both directions). The runtime
charges a run's messages the same way (``labs.runtime.transport``), so a measured and a simulated timeline with the
same network can be compared. No torch here.

**Collectives** (notebook 10): ``Link.all_reduce_s(bytes, n)`` is a ring all-reduce's time on that link,
2(n-1)·latency + 2(n-1)/n·bytes/bandwidth (Thakur et al. 2005; nccl-tests' bus bandwidth). ``Network.group_link``
says which link a group's ring runs at (its slowest hop), and ``Nodes(gpus_per_node, inside, across)`` is a cluster
of nodes: one link between GPUs of a node (NVLink), another between nodes (InfiniBand). ``labs.timeline.collectives``
turns them into the costs of a P x T x D run.

    cluster = Nodes(gpus_per_node=4, inside=Link(0.005, 450_000), across=Link(0.005, 50_000))
    cluster.group_link([0, 1]).all_reduce_s(16_777_216, 2)       # a TP pair inside a node: 0.047 ms
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..schedules import BACKWARD, FORWARD, INPUT, WEIGHT

__all__ = ["Costs", "Link", "Network", "Nodes", "as_network", "network_from_text"]


@dataclass(frozen=True)
class Costs:
    """Seconds of one action on one stage (a number, or a list with one number per stage), and of one message.

    The action kinds of ``labs.schedules`` cost: F ``forward_s``; I (input gradient) ``backward_s``; W (weight
    gradient) ``weight_s``; B (the full backward, I and W in one) ``backward_s + weight_s``. So with ``weight_s=0``,
    the default, ``backward_s`` is the whole backward, and one ``Costs`` gives a split and a fused schedule the same
    work: ``Costs(1, 1, 1)`` charges 1F1B's B 2 and ZB-H1's I and W 1 each.
    ``link_s`` is added to every message between ranks; ``network`` (a ``Network``) charges messages of
    ``message_bytes`` their link's latency + bytes / bandwidth, one at a time per link. Raises InputError for a
    negative or non-finite time.
    """

    forward_s: float | list = 1.0
    backward_s: float | list = 2.0
    weight_s: float | list = 0.0
    link_s: float = 0.0
    network: object = None
    message_bytes: int = 0

    def __post_init__(self):
        for name in ("forward_s", "backward_s", "weight_s", "link_s"):
            value = getattr(self, name)
            for v in (value if isinstance(value, (list, tuple)) and name != "link_s" else [value]):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < float("inf")):
                    raise InputError(f"Costs({name}=...) takes seconds: finite numbers >= 0 "
                                     f"(one, or a list with one per stage), got {value!r}")

    def check(self, num_stages: int) -> None:
        """Raise InputError unless every per-stage list has one entry per stage."""
        for name in ("forward_s", "backward_s", "weight_s"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) != num_stages:
                raise InputError(f"Costs({name}={list(value)!r}) has {len(value)} entries for {num_stages} stages: "
                                 f"give one number per stage, or a single number for all")

    @classmethod
    def per_layer(cls, forward_s: float, backward_s: float, layers_per_stage: int | list, link_s: float = 0.0,
                  weight_s: float = 0.0) -> "Costs":
        """Costs of stages made of ``layers_per_stage`` layers (one number, or one per stage), each layer taking
        ``forward_s`` / ``backward_s`` / ``weight_s`` seconds."""
        if isinstance(layers_per_stage, int):
            return cls(forward_s * layers_per_stage, backward_s * layers_per_stage, weight_s * layers_per_stage,
                       link_s)
        return cls([forward_s * n for n in layers_per_stage], [backward_s * n for n in layers_per_stage],
                   [weight_s * n for n in layers_per_stage], link_s)

    def of(self, kind: str, stage: int) -> float:
        """Seconds of an action of ``kind`` (F, I, W or B = I + W) on ``stage``."""
        if kind == BACKWARD:
            return self.of(INPUT, stage) + self.of(WEIGHT, stage)
        value = {FORWARD: self.forward_s, INPUT: self.backward_s, WEIGHT: self.weight_s}[kind]
        return value[stage] if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class Link:
    """One cable: ``latency_ms`` per message plus ``bytes / bandwidth`` (``bandwidth_mb_s`` in 10^6 bytes per
    second; None: unlimited)."""

    latency_ms: float = 0.0
    bandwidth_mb_s: float | None = None

    def __post_init__(self):
        if not (isinstance(self.latency_ms, (int, float)) and self.latency_ms >= 0 and math.isfinite(self.latency_ms)):
            raise InputError(f"Link latency_ms must be a number >= 0, got {self.latency_ms!r}")
        if self.bandwidth_mb_s is not None and not (isinstance(self.bandwidth_mb_s, (int, float))
                                                    and self.bandwidth_mb_s > 0):
            raise InputError(f"Link bandwidth_mb_s must be a number > 0 (or None for unlimited), "
                             f"got {self.bandwidth_mb_s!r}")

    def transfer_s(self, size_bytes: int) -> float:
        """Seconds the link is busy sending ``size_bytes`` (0 with unlimited bandwidth)."""
        return 0.0 if self.bandwidth_mb_s is None else size_bytes / (self.bandwidth_mb_s * 1e6)

    def time_s(self, size_bytes: int) -> float:
        """Seconds one message of ``size_bytes`` takes on an idle link: latency + bytes / bandwidth."""
        return self.latency_ms / 1000 + self.transfer_s(size_bytes)

    def deliver(self, size_bytes: int, sent_s: float, free_s: float) -> tuple[float, float]:
        """(when a message sent at ``sent_s`` arrives, when the link is free again), in seconds, for a link busy
        until ``free_s``.

        A link carries one message at a time: a message waits for the one before it, then occupies the link for
        bytes / bandwidth; the latency (the signal's trip) overlaps with the next message's transfer.
        """
        start_s = max(sent_s, free_s)
        done_s = start_s + self.transfer_s(size_bytes)
        return done_s + self.latency_ms / 1000, done_s

    def all_reduce_s(self, size_bytes: int, n: int) -> float:
        """Seconds of a ring all-reduce of a ``size_bytes`` buffer over n ranks joined by this link: 2(n-1) steps, each
        one latency and size/n bytes, so 2(n-1)·latency + 2(n-1)/n·size/bandwidth (Thakur, Rabenseifner, Gropp 2005;
        NCCL's bus bandwidth, nccl-tests doc/PERFORMANCE.md). 0 for n = 1. Raises InputError for n < 1."""
        if not isinstance(n, int) or n < 1:
            raise InputError(f"an all-reduce runs on a whole number n >= 1 of ranks, got {n!r}")
        return 2 * (n - 1) * self.latency_ms / 1000 + self.transfer_s(2 * (n - 1) / n * size_bytes)

    def scaled(self, time: float, size: float) -> "Link":
        """This link for a model whose compute takes ``time`` times as long and whose tensors are ``size`` times as
        large: latency x time, bandwidth x size / time. A message of the scaled size then takes ``time`` times as
        long as the original message did, so a toy keeps a real cluster's ratio of communication to compute."""
        if not (time > 0 and size > 0):
            raise InputError(f"Link.scaled takes factors > 0, got time={time!r}, size={size!r}")
        bandwidth = None if self.bandwidth_mb_s is None else self.bandwidth_mb_s * size / time
        return Link(self.latency_ms * time, bandwidth)

    @classmethod
    def parse(cls, text: str) -> "Link":
        """``"LATENCY_MS"`` or ``"LATENCY_MS,BANDWIDTH_MB_S"`` (the command line's form), e.g. ``"2,50"``."""
        try:
            parts = [float(x) for x in text.split(",")]
            if len(parts) not in (1, 2):
                raise ValueError
            return cls(parts[0], parts[1] if len(parts) == 2 else None)
        except ValueError:
            raise InputError(f"a link is LATENCY_MS or LATENCY_MS,BANDWIDTH_MB_S (e.g. 2 or 2,50), got {text!r}")


@dataclass(frozen=True)
class Network:
    """The link between every pair of ranks: ``default``, except the pairs in ``slow`` ({(a, b): Link})."""

    default: Link = field(default_factory=Link)
    slow: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.default, Link):
            raise InputError(f"Network default must be a labs.Link, got {self.default!r}")
        for pair, link in self.slow.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(r, int) and r >= 0 for r in pair)
                    and pair[0] != pair[1]):
                raise InputError(f"Network slow links are keyed by a pair of two different ranks, e.g. (1, 2); "
                                 f"got {pair!r}")
            if not isinstance(link, Link):
                raise InputError(f"Network slow[{pair}] must be a labs.Link, got {link!r}")

    def link(self, src: int, dst: int) -> Link:
        """The link between ranks ``src`` and ``dst`` (either direction of a cable)."""
        return self.slow.get((src, dst)) or self.slow.get((dst, src)) or self.default

    def time_s(self, src: int, dst: int, size_bytes: int) -> float:
        """Seconds one message of ``size_bytes`` takes from ``src`` to ``dst`` on an idle link."""
        return self.link(src, dst).time_s(size_bytes)

    def deliver(self, src: int, dst: int, size_bytes: int, sent_s: float, free_s: float) -> tuple[float, float]:
        """``Link.deliver`` on the link from ``src`` to ``dst`` (each direction of a cable is its own queue)."""
        return self.link(src, dst).deliver(size_bytes, sent_s, free_s)

    def check_ranks(self, world_size: int) -> None:
        """Raise InputError when a slow link names a rank the run does not have."""
        for pair in self.slow:
            if max(pair) >= world_size:
                raise InputError(f"the network has a slow link {pair} but the run has ranks 0..{world_size - 1}")

    def group_link(self, ranks, size_bytes: int = 0) -> Link:
        """The link a ring all-reduce over ``ranks`` (in ring order) runs at: its slowest hop for ``size_bytes``
        (every step of a ring waits for all hops). A model, and a pessimistic one across nodes: NCCL's hierarchical
        and tree algorithms do better there."""
        ranks = list(ranks)
        hops = [self.link(a, b) for a, b in zip(ranks, ranks[1:] + ranks[:1]) if a != b]
        slowness = lambda link: (link.time_s(size_bytes), 0 if link.bandwidth_mb_s is None else 1 / link.bandwidth_mb_s)
        return max(hops, key=slowness) if hops else Link()


@dataclass(frozen=True, kw_only=True)
class Nodes(Network):
    """A cluster of nodes of ``gpus_per_node`` ranks each (ranks r and s share a node when r // gpus_per_node ==
    s // gpus_per_node): ``inside`` joins the GPUs of a node (NVLink), ``across`` the nodes (InfiniBand). Keyword
    arguments only: ``Nodes(gpus_per_node=4, inside=Link(...), across=Link(...))``."""

    gpus_per_node: int = 1
    inside: Link = field(default_factory=Link)
    across: Link = field(default_factory=Link)

    def __post_init__(self):
        if not isinstance(self.default, Link) or not isinstance(self.slow, dict):
            raise InputError("Nodes takes keyword arguments: Nodes(gpus_per_node=4, inside=Link(...), "
                             "across=Link(...))")
        super().__post_init__()
        if isinstance(self.gpus_per_node, bool) or not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 1:
            raise InputError(f"Nodes(gpus_per_node=...) is a whole number >= 1, got {self.gpus_per_node!r}")
        for name in ("inside", "across"):
            if not isinstance(getattr(self, name), Link):
                raise InputError(f"Nodes({name}=...) must be a labs.Link, got {getattr(self, name)!r}")

    def node(self, rank: int) -> int:
        """The node a global rank sits in."""
        return rank // self.gpus_per_node

    def link(self, src: int, dst: int) -> Link:
        """``inside`` between two ranks of one node, ``across`` between nodes (a pair in ``slow`` overrides both)."""
        named = self.slow.get((src, dst)) or self.slow.get((dst, src))
        return named or (self.inside if self.node(src) == self.node(dst) else self.across)


def as_network(value) -> Network | None:
    """None, a Link (the same for every pair) or a Network -> a Network or None; InputError for anything else."""
    if value is None or isinstance(value, Network):
        return value
    if isinstance(value, Link):
        return Network(value)
    raise InputError(f"network must be a labs.Link, a labs.Network or None, got {value!r}")


def network_from_text(link: str | None, slow_links: list[str]) -> Network | None:
    """The command line's ``--link MS[,MB/S]`` and ``--slow-link A-B:MS[,MB/S]`` options as a Network (or None).

    Raises InputError for text of another form."""
    if link is None and not slow_links:
        return None
    slow = {}
    for text in slow_links:
        try:
            pair, cost = text.split(":")
            a, b = (int(r) for r in pair.split("-"))
        except ValueError:
            raise InputError(f"--slow-link is A-B:MS[,MB/S], e.g. 1-2:30,5; got {text!r}")
        slow[(a, b)] = Link.parse(cost)
    return Network(Link.parse(link) if link else Link(), slow)
