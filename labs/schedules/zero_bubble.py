"""Zero-bubble schedules: the backward split into B (input gradient) and W (weight gradient), W moved into the gaps.

    zb_h1(4, 8)            # ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): 1F1B's order, W late
    zb_v(4, 8)             # ZB-V: two chunks per rank in a V (stage r and 2P-1-r on rank r), ordered greedily
    zb_h1_idle_fraction(P, M, f, b, w)     # the closed form the measured ZB-H1 idle time should match

Why W helps: in 1F1B a rank that has run the backward of micro-batch m may have nothing to do until the next
gradient comes back, so it idles. Nobody waits for W (only the optimizer step does), so a rank can keep W's back and
run them exactly in those gaps.

**ZB-H1.** Rank r runs 1F1B's order (P-1-r warm-up forwards, then F B pairs, then the remaining B's) and follows
each B with a W, except that rank r holds its first r W's back and runs them in the cool-down, where 1F1B idles.
Rank r then holds at most P micro-batches (a micro-batch is held from its F until its W): never more than 1F1B's
rank 0, so the peak over ranks is 1F1B's. Its bubble per rank is (P-1)(F+B-W) instead of 1F1B's (P-1)(F+B+W),
i.e. a third of it when F=B=W (a transformer layer's split backward is close to that).

**ZB-V.** What ZB-H1 cannot remove is the ramp: the last rank starts (P-1)F late. ZB-V gives each rank two chunks
of half the layers, placed in a V (rank 0 holds the first and the last chunk), so the ramp costs half as much and the
last chunk's loss is on rank 0, next to the first. Its order here comes from a greedy list scheduler (the paper also
searches for its schedules): whenever a rank is free it runs a ready B (someone upstream waits for it), else a ready
F while it holds fewer than 2P chunks (P micro-batches, as 1F1B's rank 0), else a W it has kept back.
"""
from __future__ import annotations

from .validation import BACKWARD, FORWARD, WEIGHT, Action, Schedule, ScheduleError, _check_counts

SCHEDULES = ("zb-h1", "zb-v")


def zb_h1(num_ranks: int, num_microbatches: int) -> Schedule:
    """ZB-H1: 1F1B with the backward split; rank r keeps its first r weight steps back for the cool-down."""
    _check_counts(num_ranks, num_microbatches)
    P, M = num_ranks, num_microbatches
    schedule = []
    for r in range(P):
        warmup = min(P - 1 - r, M)
        actions = [Action(r, FORWARD, m) for m in range(warmup)]
        backwards = weights = 0
        for i in range(M - warmup):
            actions += [Action(r, FORWARD, warmup + i), Action(r, BACKWARD, i)]
            backwards += 1
            if i >= r:  # the first r W's wait for the cool-down
                actions.append(Action(r, WEIGHT, weights))
                weights += 1
        while backwards < M:  # cool-down: each B, then one W kept back, into the time 1F1B idles
            actions += [Action(r, BACKWARD, backwards), Action(r, WEIGHT, weights)]
            backwards, weights = backwards + 1, weights + 1
        actions += [Action(r, WEIGHT, m) for m in range(weights, M)]
        schedule.append(actions)
    return schedule


def v_owner(stage: int, num_ranks: int) -> int:
    """The rank holding ``stage`` in the V: stage r and stage 2P-1-r live on rank r."""
    return stage if stage < num_ranks else 2 * num_ranks - 1 - stage


def zb_v(num_ranks: int, num_microbatches: int, costs: tuple = (1.0, 1.0, 1.0)) -> Schedule:
    """ZB-V: 2 chunks per rank in a V, ordered greedily for chunk costs ``costs = (F, B, W)`` (their ratio matters)."""
    _check_counts(num_ranks, num_microbatches)
    P, M = num_ranks, num_microbatches
    stages, cap = 2 * P, 2 * P
    times = dict(zip((FORWARD, BACKWARD, WEIGHT), costs))
    actions: list[list[Action]] = [[] for _ in range(P)]
    free = [0.0] * P
    held = [0] * P
    count = {(kind, s): 0 for kind in (FORWARD, BACKWARD) for s in range(stages)}
    kept: list[list[Action]] = [[] for _ in range(P)]  # W's a rank holds back, oldest first
    finished: dict[Action, float] = {}
    for _ in range(3 * stages * M):
        best = None
        for r in range(P):
            for s in (r, stages - 1 - r):
                for priority, kind in ((0, BACKWARD), (1, FORWARD)):
                    m = count[(kind, s)]
                    if kind == BACKWARD:
                        ready = m < count[(FORWARD, s)]
                        dep = Action(s, FORWARD, m) if s == stages - 1 else Action(s + 1, BACKWARD, m)
                    else:
                        ready = m < M and held[r] < cap
                        dep = Action(s - 1, FORWARD, m) if s > 0 else None
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


def make(name: str, num_ranks: int, num_microbatches: int, virtual_stages: int = 1) -> Schedule:
    """``zb-h1`` (v=1) or ``zb-v`` (v=2: its two chunks per rank are part of the schedule)."""
    expected = {"zb-h1": 1, "zb-v": 2}[name]
    if virtual_stages not in (1, expected):
        raise ScheduleError(f"{name} holds {expected} chunk(s) per rank: use v={expected}, got v={virtual_stages}")
    return zb_h1(num_ranks, num_microbatches) if name == "zb-h1" else zb_v(num_ranks, num_microbatches)


def zb_h1_bubble(num_ranks: int, forward: float, backward: float, weight: float) -> float:
    """Idle time of each rank in ZB-H1: (P-1)(F+B-W), with B the input-gradient and W the weight-gradient time."""
    return (num_ranks - 1) * (forward + backward - weight)


def zb_h1_idle_fraction(num_ranks: int, num_microbatches: int, forward: float = 1.0, backward: float = 1.0,
                        weight: float = 1.0) -> float:
    """Idle share of a ZB-H1 step: (P-1)(F+B-W) / (M(F+B+W) + (P-1)(F+B-W)). Assumes W <= B."""
    bubble = zb_h1_bubble(num_ranks, forward, backward, weight)
    return bubble / (num_microbatches * (forward + backward + weight) + bubble)
