"""Noise for the simulator: what a busy machine does to a timeline, so that simulated traces look like measured ones.

    costs = JitterCosts(0.010, 0.020, spread=0.2, seed=7)       # every action 10/20 ms x U(0.8, 1.2)
    busy = BusyNetwork(Link(latency_ms=0.2), share=0.3, delay_s=(0.004, 0.006), seed=7)
    trace = simulate(one_f_one_b(4, 16), dataclasses.replace(costs, network=busy, message_bytes=4096))

``JitterCosts`` is a ``Costs`` whose every action takes its stage's time times a factor drawn uniformly in
[1 - spread, 1 + spread]. ``BusyNetwork`` is a network whose links all behave like ``base``, except that a random
``share`` of all messages (on every link) arrives late by a delay drawn in ``delay_s``: what another process on the
machine does to a pipeline, as against a slow cable, which delays every message on it. Both are seeded, so the same
arguments give the same timeline. Notebook 09's graded detective is judged on traces made with them. No torch.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..errors import InputError
from ..schedules import BACKWARD, INPUT, WEIGHT
from .costs import Costs, Link

__all__ = ["BusyNetwork", "JitterCosts"]


@dataclass(frozen=True)
class JitterCosts(Costs):
    """``Costs`` whose every action lasts its stage's time x U(1 - spread, 1 + spread), drawn from ``seed``, in the
    order the simulator asks (the same schedule and seed give the same timeline). InputError unless 0 <= spread < 1."""

    spread: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.spread, (int, float)) and 0 <= self.spread < 1):
            raise InputError(f"JitterCosts(spread=...) is a fraction in [0, 1), got {self.spread!r}")
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def of(self, kind: str, stage: int) -> float:
        """Seconds of one action: its stage's time for ``kind`` times one fresh draw of the jitter (a full backward B,
        I + W, is drawn once, not once per part)."""
        parts = (INPUT, WEIGHT) if kind == BACKWARD else (kind,)
        return sum(Costs.of(self, part, stage) for part in parts) * self._rng.uniform(1 - self.spread, 1 + self.spread)


class BusyNetwork:
    """Every pair of ranks joined by ``base``; a random ``share`` of all messages arrives late by U(*``delay_s``)
    seconds (drawn from ``seed``). The simulator's network interface (``deliver``) plus ``link`` and ``time_s``."""

    def __init__(self, base: Link, share: float, delay_s: tuple[float, float], seed: int = 0):
        if not isinstance(base, Link):
            raise InputError(f"BusyNetwork's base must be a labs.Link, got {base!r}")
        if not 0 <= share <= 1:
            raise InputError(f"BusyNetwork's share of late messages is a fraction in [0, 1], got {share!r}")
        low, high = delay_s
        if not 0 <= low <= high:
            raise InputError(f"BusyNetwork's delay_s is (low, high) seconds with 0 <= low <= high, got {delay_s!r}")
        self.base, self.share, self.delay_s = base, share, (low, high)
        self._rng = random.Random(seed)

    def link(self, src: int, dst: int) -> Link:
        """The link between two ranks (every pair: ``base``)."""
        return self.base

    def time_s(self, src: int, dst: int, size_bytes: int) -> float:
        """Seconds one message takes on an idle link, before any lateness."""
        return self.base.time_s(size_bytes)

    def deliver(self, src: int, dst: int, size_bytes: int, sent_s: float, free_s: float) -> tuple[float, float]:
        """``Link.deliver`` on ``base``; the message arrives later by a random delay for a ``share`` of them."""
        arrives_s, free_s = self.base.deliver(size_bytes, sent_s, free_s)
        if self._rng.random() < self.share:
            arrives_s += self._rng.uniform(*self.delay_s)
        return arrives_s, free_s
