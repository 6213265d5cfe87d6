"""The ZB-V order as its authors build it: a list-scheduling heuristic over the V placement, with a memory cap.

Source: Qi et al., "Zero Bubble Pipeline Parallelism", arXiv 2401.10241 §6 (ZB-V); the construction follows
``PipelineGraph.try_v_schedule`` / ``create_schedule`` in sail-sg/zero-bubble-pipeline-parallelism,
``megatron/core/pipeline_parallel/zerobubble/scheduler/zbv.py`` (restated here, same decisions, our names).

Rank r holds two chunks: the DOWN leg (stage r) and the UP leg (stage 2P-1-r). The builder keeps a clock per rank
(costs F, I, W per chunk and a link time) and places actions in four phases:

1. warm-up: each rank's first DOWN forward; then, from the last rank up, each rank fills the time until the first
   UP forward arrives from below with more DOWN forwards (for itself and the ranks above it), as memory allows;
2. level the forwards: a rank runs at least as many forwards as the rank above it, alternating the legs;
3. 2M rounds, each rank one input gradient I per round (the UP leg's first: it comes from the loss on rank 0; the
   DOWN leg's when its gradient from below is there), then one forward (the UP leg's when it has arrived, else the
   DOWN leg's). Before each of them a rank runs kept-back W's that fit entirely into the wait for its input, and
   one more W if the wait would make its idle time exceed the largest idle time any rank has so far ("approved"
   bubble); W's also run first whenever a forward would exceed the memory cap;
4. the W's still kept back.

The whole build is repeated with the per-rank idle times of the last build as the allowance until the largest idle
time stops shrinking, for each of the four choices "may a forward / an I be delayed by one W to fill a wait"; the
order with the smallest largest idle time wins. Memory: a chunk's activations count from its F until its W, capped
at 2P chunks per rank = P micro-batches of a whole stage, 1F1B's peak.
"""
from __future__ import annotations

from collections import deque

from .actions import FORWARD, INPUT, WEIGHT, Action, ScheduleError

__all__ = ["build_v"]

DOWN, UP = 0, 1


class _Build:
    def __init__(self, P: int, M: int, costs: tuple, link_s: float, cap: int, allowance: list | None):
        self.P, self.M, self.link, self.cap = P, M, link_s, cap
        self.cost = dict(zip((FORWARD, INPUT, WEIGHT), costs))
        self.allowance = allowance
        self.end: dict[Action, float] = {}
        self.free, self.held, self.idle = [0.0] * P, [0] * P, [0.0] * P
        self.kept = [deque() for _ in range(P)]  # W's held back, oldest first
        self.rows: list[list[Action]] = [[] for _ in range(P)]
        self.count = {(r, kind, leg): 0 for r in range(P) for kind in (FORWARD, INPUT) for leg in (DOWN, UP)}

    def stage(self, r: int, leg: int) -> int:
        return r if leg == DOWN else 2 * self.P - 1 - r

    def source(self, r: int, kind: str, leg: int, m: int) -> Action | None:
        """The action on a neighbouring rank whose message this one waits for (None: its input is local)."""
        if leg == DOWN and kind == FORWARD and r > 0:
            return Action(r - 1, FORWARD, m)
        if leg == UP and kind == FORWARD and r < self.P - 1:
            return Action(self.stage(r + 1, UP), FORWARD, m)
        if leg == UP and kind == INPUT and r > 0:
            return Action(self.stage(r - 1, UP), INPUT, m)
        if leg == DOWN and kind == INPUT and r < self.P - 1:
            return Action(r + 1, INPUT, m)
        return None

    def arrival(self, r: int, kind: str, leg: int) -> float | None:
        dep = self.source(r, kind, leg, self.count[(r, kind, leg)])
        return None if dep is None else self.end[dep] + self.link

    def put(self, r: int, action: Action) -> None:
        start = self.free[r]
        if action.kind != WEIGHT:
            leg = DOWN if action.stage == r else UP
            dep = self.source(r, action.kind, leg, action.microbatch)
            if dep is not None:
                if dep not in self.end:
                    raise ScheduleError(f"zb_v({self.P}, {self.M}) found no order: {action} before {dep}")
                start = max(start, self.end[dep] + self.link)
            self.count[(r, action.kind, leg)] += 1
        if self.count[(r, FORWARD, DOWN)] > (action.kind == FORWARD and action.stage == r):
            self.idle[r] += start - self.free[r]  # idle after the rank's first forward
        self.end[action] = self.free[r] = start + self.cost[action.kind]
        self.held[r] += {FORWARD: 1, INPUT: 0, WEIGHT: -1}[action.kind]
        self.rows[r].append(action)
        if action.kind == INPUT:
            self.kept[r].append(Action(action.stage, WEIGHT, action.microbatch))

    def put_next(self, r: int, kind: str, leg: int) -> None:
        self.put(r, Action(self.stage(r, leg), kind, self.count[(r, kind, leg)]))

    def budget(self, r: int) -> float:
        if self.allowance is None:
            return max(max(self.idle), 0.0)
        return max(max(self.idle), max(self.allowance) - self.allowance[r])

    def fill(self, r: int, arrives: float | None, may_delay: bool) -> None:
        """W's that fit into the wait for an input arriving at ``arrives``; one more if the wait is too long."""
        if arrives is None:
            return
        while self.kept[r] and arrives >= self.free[r] + self.cost[WEIGHT]:
            self.put(r, self.kept[r].popleft())
        if self.kept[r] and may_delay and arrives - self.free[r] > self.budget(r) - self.idle[r]:
            self.put(r, self.kept[r].popleft())

    def run(self, fill_forward: bool, fill_input: bool) -> "_Build":
        P, M, f = self.P, self.M, self.cost[FORWARD]
        for r in range(P):  # 1. warm-up
            self.put_next(r, FORWARD, DOWN)
        for r in reversed(range(P)):
            if r < P - 1:
                arrives = self.end[Action(self.stage(r + 1, UP), FORWARD, 0)] + self.link
                while (self.held[r] + 2 + 2 * r <= self.cap and self.free[r] + f <= arrives
                       and self.count[(r, FORWARD, DOWN)] < M):
                    for j in range(r + 1):
                        self.put_next(j, FORWARD, DOWN)
            self.put_next(r, FORWARD, UP)
        forwards = lambda r: self.count[(r, FORWARD, DOWN)] + self.count[(r, FORWARD, UP)]
        leg = DOWN
        for r in range(1, P):  # 2. level the forwards
            while forwards(r) < forwards(r - 1) or self.count[(r, FORWARD, UP)] <= self.count[(r - 1, FORWARD, UP)] < M:
                for j in range(P - 1, r - 1, -1):
                    if self.count[(j, FORWARD, leg)] < M:
                        self.put_next(j, FORWARD, leg)
                leg = 1 - leg
        for _ in range(2 * M):  # 3. one I and one F per rank and round
            up, down = [], []
            for r in range(P):
                n_down, n_up = self.count[(r, INPUT, DOWN)], self.count[(r, INPUT, UP)]
                ready = r == P - 1 or n_up >= M or self.source(r, INPUT, DOWN, n_down) in self.end
                (down if n_down < n_up and ready else up).append(r)
            for r, leg in [(r, DOWN) for r in reversed(down)] + [(r, UP) for r in up]:
                self.fill(r, self.arrival(r, INPUT, leg), leg == DOWN or fill_input)
                self.put_next(r, INPUT, leg)
            for r in range(P):
                n_down, n_up = self.count[(r, FORWARD, DOWN)], self.count[(r, FORWARD, UP)]
                if n_up >= M:
                    continue
                if n_up >= n_down:
                    leg = DOWN
                elif r == P - 1 or self.source(r, FORWARD, UP, n_up) in self.end:
                    leg = UP
                elif n_down < M and (r == 0 or self.source(r, FORWARD, DOWN, n_down) in self.end):
                    leg = DOWN
                else:
                    continue
                while self.held[r] + 1 > self.cap:
                    self.put(r, self.kept[r].popleft())
                self.fill(r, self.arrival(r, FORWARD, leg), fill_forward)
                self.put_next(r, FORWARD, leg)
        for r in range(P):  # 4. what is left
            while self.kept[r]:
                self.put(r, self.kept[r].popleft())
        return self


def build_v(P: int, M: int, costs: tuple = (1.0, 1.0, 1.0), link_s: float = 0.0) -> list[list[Action]]:
    """The authors' ZB-V order for P ranks, M micro-batches, chunk costs ``costs = (F, I, W)`` and a link time.

    Raises ScheduleError if no order is found (not seen for 2 <= P <= 8, P <= M <= 3P)."""
    best = None
    for fill_input in (True, False):
        for fill_forward in (True, False):
            build = _Build(P, M, costs, link_s, 2 * P, None).run(fill_forward, fill_input)
            while True:  # retry with this build's idle times as the allowance while the worst one shrinks
                retry = _Build(P, M, costs, link_s, 2 * P, build.idle).run(fill_forward, fill_input)
                if max(retry.idle) >= max(build.idle):
                    break
                build = retry
            if best is None or max(build.idle) < max(best.idle):
                best = build
    return best.rows
