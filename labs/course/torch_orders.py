"""Every schedule class of the installed ``torch.distributed.pipelining``, as compute-only lists in our notation.

    order = torch_order("ZBVZeroBubble", P=4, M=8, v=2)   # PyTorch's pipeline_order (private API, see below)
    rows, together = convert(order)                        # our lists; the forwards PyTorch overlaps with a B
    starts = visualiser_starts(order)                      # when PyTorch's visualiser starts each action

How the order is had without running anything: each class computes ``pipeline_order`` (every rank's compute
actions, ``None`` for a slot it leaves idle) in its constructor, from the stage objects it is given; it reads only
``group_size``, ``group_rank``, ``num_stages`` and ``submod`` of them. PyTorch's own visualiser builds the classes on
``mock.create_autospec(PipelineStage)`` stand-ins for exactly this: ``get_schedule_ops`` in
``torch/distributed/pipelining/_schedule_visualizer.py``; we call it. **Private API**: that module, ``_Action``,
``_ComputationType``, ``pipeline_order`` and ``add_schedule_op_spacing`` carry leading underscores or are
undocumented (torch 2.13 here); ``tests/test_torch_schedules.py`` pins what we rely on, so an upgrade fails there.

Conversion: drop ``None`` and the non-compute actions (``REDUCE_GRAD``, which the single-stage classes append);
PyTorch's F, I, W, B are ours one for one (its B is the full backward, as ours). ``OVERLAP_F_B`` (DualPipeV: a forward
and a full backward issued as one unit, run one after the other by ``_PipelineScheduleRuntime`` unless a custom
function is registered for it) becomes its two sub-actions in order, the first reported in ``together`` so
``labs.simulate(..., together=...)`` starts the pair as the visualiser does.
"""
from __future__ import annotations

import contextlib
import io

from torch.distributed.pipelining import _schedule_visualizer as _vis
from torch.distributed.pipelining import schedules as _schedules

from ..schedules import KINDS, Action

__all__ = ["CLASSES", "SINGLE", "V_SHAPED", "WIDTH", "convert", "points", "torch_order", "visualiser_starts"]

CLASSES = {name: getattr(_schedules, "Schedule" + name) for name in (
    "GPipe", "1F1B", "Interleaved1F1B", "LoopedBFS", "InterleavedZeroBubble", "ZBVZeroBubble", "DualPipeV")}
SINGLE = ("GPipe", "1F1B")  # one stage per rank (PipelineScheduleSingle)
V_SHAPED = ("ZBVZeroBubble", "DualPipeV")  # exactly two stages per rank, in a V
WIDTH = {"F": 1, "I": 1, "W": 1, "B": 2}  # the visualiser's slots per kind: labs.Costs(1, 1, 1) charges the same


def torch_order(name: str, P: int, M: int, v: int = 1) -> list[list]:
    """PyTorch's ``pipeline_order`` of class ``name`` (a key of CLASSES) on P ranks, M micro-batches, v stages per
    rank. Raises whatever the class raises for a shape it refuses (ValueError, AssertionError)."""
    return _vis.get_schedule_ops(CLASSES[name], P, M, num_stages_per_rank=None if name in SINGLE else v)


def _kind(action) -> str:
    kind = action.computation_type.value  # "F", "I", "W", "B" in torch 2.13
    if kind not in WIDTH:
        raise ValueError(f"{action} is no compute action of kind F/I/W/B: labs.course.torch_orders needs updating")
    return kind


def convert(order) -> tuple[list[list[Action]], frozenset]:
    """(our per-rank lists, the actions that start together with the next one) from a ``pipeline_order``."""
    rows, together = [], set()
    for ops in order:
        row = []
        for op in ops:
            if op is None or not op.is_compute_op:  # an idle slot; REDUCE_GRAD, UNSHARD, RESHARD (no compute)
                continue
            subs = op.sub_actions if op.sub_actions is not None else (op,)
            for i, sub in enumerate(subs):
                row.append(Action(sub.stage_index, _kind(sub), sub.microbatch_index))
                if op.sub_actions is not None and i == 0:
                    together.add(row[-1])
        rows.append(row)
    return rows, frozenset(together)


def visualiser_starts(order) -> dict[Action, int]:
    """The start slot of every action in PyTorch's own spacing of ``order`` (``add_schedule_op_spacing``: F, I, W one
    slot, B two; its debug prints swallowed)."""
    compact = [[op for op in ops if op is not None and op.is_compute_op] for ops in order]
    with contextlib.redirect_stdout(io.StringIO()):
        spaced = _vis.add_schedule_op_spacing(compact)
    starts = {}
    for ops in spaced:
        t = 0
        for op in ops:
            if op is None:
                t += 1
                continue
            for sub in (op.sub_actions if op.sub_actions is not None else (op,)):
                starts[Action(sub.stage_index, _kind(sub), sub.microbatch_index)] = t
                t += WIDTH[_kind(sub)]
    return starts


def points(name: str, Ps=(2, 3, 4), extra_M: int = 6, vs=(2, 3)) -> list[tuple[int, int, int]]:
    """(P, M, v) shapes to try for class ``name``: M = P .. P + extra_M, v from ``vs`` where the class takes v."""
    shapes = []
    for P in Ps:
        for M in range(P, P + extra_M + 1):
            for v in ((1,) if name in SINGLE else (2,) if name in V_SHAPED else vs):
                shapes.append((P, M, v))
    return shapes


assert set(WIDTH) == set(KINDS)
