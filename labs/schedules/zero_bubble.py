"""Zero-bubble schedules: the backward split into I (input gradient) and W (weight gradient), W moved into the gaps.

    zb_h1(4, 8)          # ZB-H1: 1F1B's order, rank r keeps its first r W's for the cool-down
    zb_h2(4, 8)          # ZB-H2: a deeper warm-up; W's kept back fill the tail (about twice 1F1B's memory)
    zb_v(4, 8)           # ZB-V: two chunks per rank in a V, in the order the authors build (``v_schedule``)
    zb_v_greedy(4, 8)    # the same V, ordered by the greedy list scheduler this course used before

Source: Qi, Wan, Huang, Lin, "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv 2401.10241 (ZB-H1 §2.1, ZB-H2
§2.2, ZB-V §6). The paper writes the input gradient as B; PyTorch, and this course, write it I and keep B for the
full backward. The closed forms and their conditions are in ``labs.theory`` (``zb_h1_bubble``, ``zb_h2_step``, ...).

Why W helps: in 1F1B a rank that has run the backward of micro-batch m may have nothing to do until the next
gradient comes back, so it idles. Nobody waits for W (only the optimizer step does), so a rank can keep W's back and
run them exactly in those gaps.

**ZB-H1.** Rank r runs 1F1B's order (P-1-r warm-up forwards, then F I pairs, then the remaining I's) and follows
each I with the oldest W not run yet, except that rank r keeps its first r W's back and runs one after each I of the
cool-down, where 1F1B idles. A micro-batch is held from its F until its W, so rank r holds at most P micro-batches,
1F1B's peak over ranks.

**ZB-H2.** Rank r warms up with min(2(P-1-r)+1, M) forwards: all the forwards that fit before its first input
gradient can come back at F = I = W. Then per micro-batch: its I, then the next F (preceded by the oldest W only when
the rank already holds 2P-1 micro-batches); once the forwards are done each I is followed by the oldest W, and the
W's still kept run at the end. Every rank is then busy without a gap from its first action to its last (at
F = I = W, M >= 2P-1): the outline is a parallelogram, for a peak of 2P-1 micro-batches on every rank.

**ZB-V.** What neither removes within one step is the ramp: the last rank starts (P-1)F late. ZB-V gives each rank
two chunks of half the layers in a V (rank 0 holds the first and the last chunk), so a forward's trip down and back
costs chunk times, and the last chunk's loss is on rank 0, next to the first.
"""
from __future__ import annotations

from .actions import FORWARD, INPUT, WEIGHT, Action, Schedule, ScheduleError, check_counts
from .lowering import producer
from .v_schedule import build_v

__all__ = ["ZERO_BUBBLE", "v_owner", "zb_h1", "zb_h2", "zb_v", "zb_v_greedy"]

ZERO_BUBBLE = {"zb-h1": 1, "zb-h2": 1, "zb-v": 2}  # name -> model chunks per rank v


def zb_h1(P: int, M: int) -> Schedule:
    """ZB-H1 (arXiv 2401.10241, §2.1): 1F1B with the backward split; rank r keeps its first r weight steps back
    for the cool-down. Raises ScheduleError for P or M below 1."""
    check_counts(P, M)
    schedule = []
    for r in range(P):
        warmup = min(P - 1 - r, M)
        actions = [Action(r, FORWARD, m) for m in range(warmup)]
        inputs = weights = 0
        for i in range(M - warmup):
            actions += [Action(r, FORWARD, warmup + i), Action(r, INPUT, i)]
            inputs += 1
            if i >= r:  # the first r W's wait for the cool-down
                actions.append(Action(r, WEIGHT, weights))
                weights += 1
        while inputs < M:  # cool-down: each I, then one W kept back, into the time 1F1B idles
            actions += [Action(r, INPUT, inputs), Action(r, WEIGHT, weights)]
            inputs, weights = inputs + 1, weights + 1
        actions += [Action(r, WEIGHT, m) for m in range(weights, M)]
        schedule.append(actions)
    return schedule


def zb_h2(P: int, M: int) -> Schedule:
    """ZB-H2 (arXiv 2401.10241, §2.2): min(2(P-1-r)+1, M) warm-up forwards on rank r, then I and F alternating (a W
    first only at the cap of 2P-1 micro-batches held), then I and W, then the W's kept back.

    Peak: 2P-1 micro-batches on every rank (1F1B: P on rank 0). Raises ScheduleError for P or M below 1."""
    check_counts(P, M)
    cap = 2 * P - 1
    schedule = []
    for r in range(P):
        row: list[Action] = []
        forwards = weights = 0
        for _ in range(min(2 * (P - 1 - r) + 1, M)):
            row.append(Action(r, FORWARD, forwards))
            forwards += 1
        for m in range(M):
            row.append(Action(r, INPUT, m))
            if forwards < M:
                if forwards - weights >= cap:  # held = forwards run - weights run
                    row.append(Action(r, WEIGHT, weights))
                    weights += 1
                row.append(Action(r, FORWARD, forwards))
                forwards += 1
            else:
                row.append(Action(r, WEIGHT, weights))
                weights += 1
        row += [Action(r, WEIGHT, m) for m in range(weights, M)]
        schedule.append(row)
    return schedule


def v_owner(stage: int, P: int) -> int:
    """The rank holding ``stage`` in the V of ZB-V: stage r and stage 2P-1-r live on rank r.

    Raises ScheduleError for a stage outside 0 .. 2P-1."""
    if not 0 <= stage < 2 * P:
        raise ScheduleError(f"a V over P={P} ranks has stages 0..{2 * P - 1}, not {stage}")
    return stage if stage < P else 2 * P - 1 - stage


def zb_v(P: int, M: int, costs: tuple = (1.0, 1.0, 1.0), link_s: float = 0.0) -> Schedule:
    """ZB-V (arXiv 2401.10241, §6) in the authors' order (``labs.schedules.v_schedule.build_v``) for chunk costs
    ``costs = (F, I, W)`` (only their ratio matters) and ``link_s`` per message.

    At F = I = W its step is 2M(F+I+W) + (P-1)F in chunk times, the least any order can take, with no idle time
    inside a rank's span once M >= 2P-1; no rank holds more than 2P chunks (P micro-batches, 1F1B's peak).
    Raises ScheduleError for P or M below 1."""
    check_counts(P, M)
    return build_v(P, M, costs, link_s)


def zb_v_greedy(P: int, M: int, costs: tuple = (1.0, 1.0, 1.0)) -> Schedule:
    """The V of ZB-V ordered by a greedy list scheduler (this course's earlier ``zb_v``): whenever a rank is free it
    runs a ready I (someone upstream waits for it), else a ready F while it holds fewer than 2P chunks, else a W it
    kept back. One time unit slower than ``zb_v`` at 8 of 21 points (P = 2, 3, 4; M = P .. P+6; F = I = W), because
    "I first" delays the last micro-batch's trip round the V (notebook 11). Raises ScheduleError for P, M below 1."""
    check_counts(P, M)
    stages, cap = 2 * P, 2 * P
    times = dict(zip((FORWARD, INPUT, WEIGHT), costs))
    actions: list[list[Action]] = [[] for _ in range(P)]
    free, held = [0.0] * P, [0] * P
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
                        key = (max(free[r], finished[dep] if dep else 0.0), priority, -s, r)
                        best = min(best, (key, r, Action(s, kind, m))) if best else (key, r, Action(s, kind, m))
            if kept[r]:
                key = (free[r], 2, 0, r)
                best = min(best, (key, r, kept[r][0])) if best else (key, r, kept[r][0])
        if best is None:
            raise ScheduleError(f"zb_v_greedy found no runnable action for P={P}, M={M}: memory cap {cap} too small")
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
