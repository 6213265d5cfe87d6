"""Steps back to back: why "zero bubble" needs the optimizer step changed, and what deferred W's do to a
data-parallel all-reduce (no torch; every number here is simulated).

    steady_step(zb_h2(4, 8), Costs(1, 1, 1))                       # 27: a global synchronisation after each step
    steady_step(zb_h2(4, 8), Costs(1, 1, 1), synchronised=False)   # 24: post-validation, every rank goes on alone
    dp_step(zb_h1(4, 8), Costs(1, 1, 1), allreduce_s=[1, 1, 1, 4])  # + each stage's data-parallel all-reduce

**Post-validation** (Qi et al., arXiv 2401.10241 §4, "Bypassing optimizer synchronizations"). A usual optimizer step
begins with an all-reduce over every pipeline rank: the global gradient norm (for clipping) and whether any gradient
is NaN or infinite (mixed precision). Every rank waits for the slowest, and the next step starts on all ranks at
once, so the last rank again waits (P-1) forwards before its first action. ZB-H2 and ZB-V keep every rank busy from
its own first action to its own last (a parallelogram); only that global wait puts the ramp back into each step.
Post-validation removes the wait: each rank updates as soon as its own W's are done, with a partly reduced state
handed down the pipeline, and rolls the update back in the rare step where the full state (reaching it during the
next warm-up) shows that clipping or a NaN needed it. ``steady_step`` models the common case only (no rollback; the
partly reduced state rides on dependencies that already order the ranks).

**A data-parallel all-reduce** of a stage's gradients can start only after that stage's last B or W. 1F1B's later
ranks finish their backwards early and hide it in their cool-down; zero-bubble schedules fill that cool-down with
W's, so every rank's gradients become final at the very end (``dp_step``).
"""
from __future__ import annotations

from ..errors import InputError
from ..schedules import BACKWARD, WEIGHT, Action, validate
from .costs import Costs
from .simulator import simulate

__all__ = ["dp_step", "repeat", "steady_step"]


def repeat(schedule, K: int) -> list[list[Action]]:
    """K steps back to back as one list per rank: step k's micro-batch m becomes k*M + m. Raises InputError for
    K < 1, ScheduleError for a schedule ``validate`` refuses."""
    if not isinstance(K, int) or K < 1:
        raise InputError(f"repeat needs K >= 1 steps, got {K!r}")
    rows = validate(schedule)
    M = max(a.microbatch for acts in rows for a in acts) + 1
    return [[Action(a.stage, a.kind, k * M + a.microbatch) for k in range(K) for a in acts] for acts in rows]


def steady_step(schedule, costs: Costs = Costs(1.0, 1.0, 1.0), K: int = 4, synchronised: bool = True,
                sync_s: float = 0.0, together: frozenset = frozenset()) -> float:
    """Seconds per step in a run of K >= 2 steps (the last K-1 of them: the first step's ramp is not counted).

    ``synchronised``: a global all-reduce of ``sync_s`` seconds after every step, before any rank starts the next
    (every step is then the simulated step plus ``sync_s``); otherwise each rank starts its next list as soon as its
    own is done (post-validation's common case). Raises InputError for K < 2."""
    if not isinstance(K, int) or K < 2:
        raise InputError(f"steady_step needs K >= 2 steps to measure a period, got {K!r}")
    if synchronised:
        return simulate(schedule, costs, together=together).step_time_s + sync_s
    rows = validate(schedule)
    M = max(a.microbatch for acts in rows for a in acts) + 1
    shifted = frozenset(Action(a.stage, a.kind, k * M + a.microbatch) for a in together for k in range(K))
    trace = simulate(repeat(rows, K), costs, together=shifted)
    ends = [max(e.end_s for events in trace.events for e in events if e.action.microbatch // M == k)
            for k in range(K)]
    return (ends[-1] - ends[0]) / (K - 1)


def dp_step(schedule, costs: Costs = Costs(1.0, 1.0, 1.0), allreduce_s=0.0, together: frozenset = frozenset()
            ) -> float:
    """The step when every stage all-reduces its gradients across data-parallel replicas after its last B or W:
    ``allreduce_s`` seconds per stage (one number, or one per stage), one all-reduce at a time per rank. Seconds."""
    trace = simulate(schedule, costs, together=together)
    finish = []
    for events in trace.events:
        last: dict[int, float] = {}
        for e in events:
            if e.action.kind in (BACKWARD, WEIGHT):
                last[e.action.stage] = max(last.get(e.action.stage, 0.0), e.end_s)
        free = 0.0
        for stage, ready in sorted(last.items(), key=lambda item: item[1]):
            seconds = allreduce_s[stage] if isinstance(allreduce_s, (list, tuple)) else allreduce_s
            free = max(free, ready) + seconds
        finish.append(max(events[-1].end_s, free))
    return max(finish)
