"""PyTorch's own pipeline orders as course schedules, for the tests (needs torch; builds no process group).

Each of ``torch.distributed.pipelining``'s schedule classes computes every rank's compute-only order
(``pipeline_order``) in its constructor; it is built here on stand-in stages. Conversion: idle slots and
non-compute actions dropped, OVERLAP_F_B expanded in sub-action order; F -> F, I (input gradient) -> B, W -> W, a
full B -> B, plus a W right after it in a schedule that splits any backward (so every stage runs F, B, W for every
micro-batch). ``Schedule1F1B`` is left out: its ``_get_pipeline_order`` is off by one on the last rank (it lists F1..FM
there, torch 2.13; the order it executes is the course's 1f1b).
"""
from __future__ import annotations

import torch.distributed.pipelining.schedules as S

CLASSES = {"GPipe": S.ScheduleGPipe, "Interleaved1F1B": S.ScheduleInterleaved1F1B, "LoopedBFS": S.ScheduleLoopedBFS,
           "InterleavedZeroBubble": S.ScheduleInterleavedZeroBubble, "ZBVZeroBubble": S.ScheduleZBVZeroBubble,
           "DualPipeV": S.ScheduleDualPipeV}
V_SHAPED = ("ZBVZeroBubble", "DualPipeV")


class _Stage:
    """Just enough of a PipelineStage for the schedules' constructors."""

    def __init__(self, stage_index, num_stages, group_size):
        self.stage_index, self.num_stages, self.group_size, self.group_rank = stage_index, num_stages, group_size, 0
        self.submod = None
        self.is_first, self.is_last = stage_index == 0, stage_index == num_stages - 1

    def has_backward(self):
        return True


def _build(name: str, P: int, M: int, v: int):
    cls = CLASSES[name]
    if name == "GPipe":
        sched = cls.__new__(cls)
        S._PipelineSchedule.__init__(sched, M, loss_fn=lambda *a: None)
        sched._num_stages, sched._n_microbatches = P, M
        return sched
    v = 2 if name in V_SHAPED else v
    num_stages = P * v
    owner = {s: (s if s < P else 2 * P - 1 - s) if name in V_SHAPED else s % P for s in range(num_stages)}
    return cls([_Stage(s, num_stages, P) for s in range(num_stages) if owner[s] == 0], M, loss_fn=lambda *a: None)


def course_schedule(name: str, P: int, M: int, v: int = 2) -> list[list[str]]:
    """PyTorch's order for ``name`` at P ranks, M micro-batches (v chunks where the class takes it) in the course's
    notation; raises what the class raises for counts it refuses."""
    sched = _build(name, P, M, v)
    order = sched._get_pipeline_order() if name == "GPipe" else sched.pipeline_order
    compute = (S.FORWARD, S.FULL_BACKWARD, S.BACKWARD_INPUT, S.BACKWARD_WEIGHT)
    flat = {rank: [sub for a in actions if a is not None
                   for sub in (a.sub_actions if a.sub_actions is not None else (a,)) if sub.computation_type in compute]
            for rank, actions in order.items()}
    split = any(a.computation_type in (S.BACKWARD_INPUT, S.BACKWARD_WEIGHT) for acts in flat.values() for a in acts)
    letter = {S.FORWARD: "F", S.BACKWARD_INPUT: "B", S.BACKWARD_WEIGHT: "W", S.FULL_BACKWARD: "B"}
    schedule = []
    for rank in sorted(flat):
        row = []
        for a in flat[rank]:
            row.append(f"{a.stage_index}{letter[a.computation_type]}{a.microbatch_index}")
            if split and a.computation_type == S.FULL_BACKWARD:
                row.append(f"{a.stage_index}W{a.microbatch_index}")
        schedule.append(row)
    return schedule


def points(Ps=(2, 3, 4), extra=7):
    """(name, P, M, schedule) for every class, P in ``Ps``, M = P .. P+extra-1 where the class accepts M."""
    for name in CLASSES:
        for P in Ps:
            for M in range(P, P + extra):
                try:
                    yield name, P, M, course_schedule(name, P, M)
                except (ValueError, AssertionError, RuntimeError):  # the class refuses this M (DualPipeV: M >= 2P)
                    continue
