"""Zero-bubble schedules: the backward split into I (input gradient) and W (weight gradient), W moved into the gaps.

    zb_h1(4, 8)            # ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv 2401.10241)
    zb_v(4, 8)             # ZB-V: two chunks per rank in a V (stage r and 2P-1-r on rank r), ordered greedily

(The closed form the measured ZB-H1 idle time should match is ``labs.theory.zb_h1_idle_fraction(P, M, F, B, W)``.)

(The paper writes the input gradient as B; PyTorch, and this course, write it I and keep B for the full backward.)

Why W helps: in 1F1B a rank that has run the backward of micro-batch m may have nothing to do until the next
gradient comes back, so it idles. Nobody waits for W (only the optimizer step does), so a rank can keep W's back and
run them exactly in those gaps.

**ZB-H1.** Rank r runs 1F1B's order (P-1-r warm-up forwards, then F I pairs, then the remaining I's) and follows
each I with a W, except that rank r holds its first r W's back and runs them in the cool-down, where 1F1B idles.
Rank r then holds at most P micro-batches (a micro-batch is held from its F until its W): never more than 1F1B's
rank 0, so the peak over ranks is 1F1B's. Its bubble per rank is (P-1)(F+B-W) instead of 1F1B's (P-1)(F+B+W),
i.e. a third of it when F=B=W (a transformer layer's split backward is close to that).

**ZB-V.** What ZB-H1 cannot remove is the ramp: the last rank starts (P-1)F late. ZB-V gives each rank two chunks
of half the layers, placed in a V (rank 0 holds the first and the last chunk), so the ramp costs half as much and the
last chunk's loss is on rank 0, next to the first. Its order here comes from a greedy list scheduler (the paper also
searches for its schedules): whenever a rank is free it runs a ready I (someone upstream waits for it), else a ready
F while it holds fewer than 2P chunks (P micro-batches, as 1F1B's rank 0), else a W it has kept back.
"""
from __future__ import annotations

from .actions import FORWARD, INPUT, WEIGHT, Action, Schedule, ScheduleError, check_counts
from .lowering import producer

__all__ = ["ZERO_BUBBLE", "v_owner", "zb_h1", "zb_v"]

ZERO_BUBBLE = {"zb-h1": 1, "zb-v": 2}  # name -> model chunks per rank v


def zb_h1(P: int, M: int) -> Schedule:
    """ZB-H1 (arXiv 2401.10241, section 3): 1F1B with the backward split; rank r keeps its first r weight steps back
    for the cool-down. Raises ScheduleError for P or M below 1."""
    check_counts(P, M)
    schedule = []
    for r in range(P):
        warmup = min(P - 1 - r, M)
        actions = [Action(r, FORWARD, m) for m in range(warmup)]
        backwards = weights = 0
        for i in range(M - warmup):
            actions += [Action(r, FORWARD, warmup + i), Action(r, INPUT, i)]
            backwards += 1
            if i >= r:  # the first r W's wait for the cool-down
                actions.append(Action(r, WEIGHT, weights))
                weights += 1
        while backwards < M:  # cool-down: each I, then one W kept back, into the time 1F1B idles
            actions += [Action(r, INPUT, backwards), Action(r, WEIGHT, weights)]
            backwards, weights = backwards + 1, weights + 1
        actions += [Action(r, WEIGHT, m) for m in range(weights, M)]
        schedule.append(actions)
    return schedule


def v_owner(stage: int, P: int) -> int:
    """The rank holding ``stage`` in the V of ZB-V: stage r and stage 2P-1-r live on rank r."""
    return stage if stage < P else 2 * P - 1 - stage


def zb_v(P: int, M: int, costs: tuple = (1.0, 1.0, 1.0)) -> Schedule:
    """ZB-V (arXiv 2401.10241): 2 chunks per rank in a V, ordered greedily for chunk costs
    ``costs = (F, I, W)`` (only their ratio matters). Raises ScheduleError for P or M below 1."""
    check_counts(P, M)
    stages, cap = 2 * P, 2 * P
    times = dict(zip((FORWARD, INPUT, WEIGHT), costs))
    actions: list[list[Action]] = [[] for _ in range(P)]
    free = [0.0] * P
    held = [0] * P
    count = {(kind, s): 0 for kind in (FORWARD, INPUT) for s in range(stages)}
    kept: list[list[Action]] = [[] for _ in range(P)]  # W's a rank holds back, oldest first
    finished: dict[Action, float] = {}
    for _ in range(3 * stages * M):
        best = None
        for r in range(P):
            for s in (r, stages - 1 - r):
                for priority, kind in ((0, INPUT), (1, FORWARD)):
                    m = count[(kind, s)]
                    ready = m < count[(FORWARD, s)] if kind == INPUT else m < M and held[r] < cap
                    # what it waits for: the message it consumes, or (last stage's I) its own forward
                    dep = producer(Action(s, kind, m), stages) or (Action(s, FORWARD, m) if kind == INPUT else None)
                    if ready and (dep is None or dep in finished):
                        start = max(free[r], finished[dep] if dep else 0.0)
                        key = (start, priority, -s, r)
                        best = min(best, (key, r, Action(s, kind, m))) if best else (key, r, Action(s, kind, m))
            if kept[r]:
                key = (free[r], 2, 0, r)
                best = min(best, (key, r, kept[r][0])) if best else (key, r, kept[r][0])
        if best is None:
            raise ScheduleError(f"zb_v found no runnable action for P={P}, M={M}: memory cap {cap} too small")
        (start, *_), r, action = best
        actions[r].append(action)
        finished[action] = free[r] = start + times[action.kind]
        if action.kind == WEIGHT:
            kept[r].pop(0)
            held[r] -= 1
        else:
            count[(action.kind, action.stage)] += 1
            if action.kind == FORWARD:
                held[r] += 1
            else:
                kept[r].append(Action(action.stage, WEIGHT, action.microbatch))
    return actions

