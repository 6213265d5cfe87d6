"""The bridge to production: our action lists as PyTorch's schedule CSV, run by ``torch.distributed.pipelining``.

    text = to_csv(schedule)                       # one row per rank: "0F0,0F1,0I0,0W0,..."
    losses = train_torch(schedule, steps=10)      # the same TinyGPT training, on PyTorch's own schedule runtime

PyTorch writes actions the way this course does (``2F5``), with the same four kinds (F, I input gradient, W weight
gradient, B full backward), so the export is the lists as text (``labs.schedules.to_text``); a list in the course's
old split notation (B for the input gradient, next to W's) is read as such by ``parse`` and exported with I's.
``_PipelineScheduleRuntime._load_csv`` (``format="compute_only"``) reads the file, infers which rank holds which
stage from the rows, checks the schedule, and inserts the sends and receives itself (its ``_add_send_recv`` lowering
pass): the rows hold only computation, exactly like our lists. **Private API**: ``_PipelineScheduleRuntime`` and
``_load_csv`` carry leading underscores (torch 2.13 here); a torch upgrade may change them without notice.

``train_torch`` builds each rank's stages with the runtime's own ``build_stages`` (the same layers, the same cut),
wraps them in ``torch.distributed.pipelining.PipelineStage``, loads the CSV and calls ``schedule.step`` once per
training step, then Adam, as ``labs.course.capstone.train`` does on our runtime. PyTorch averages the micro-batches'
losses by scaling the gradients by 1/M (``scale_grads=True``) where we divide each loss by M: the same gradients, up
to rounding. The step loss is the mean of the per-micro-batch losses PyTorch returns.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile

import torch
import torch.distributed as dist

from ..models.gpt import TinyGPT
from ..runtime.launcher import launch
from ..runtime.step import PipelineJob, build_stages
from ..schedules import FORWARD, shape, stage_owners, to_text
from .capstone import TrainJob, checked_schedule, step_batches

__all__ = ["to_csv", "train_torch"]


def to_csv(schedule) -> str:
    """The schedule as PyTorch's compute-only CSV: row r is rank r's actions (``labs.schedules.to_text``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for actions in to_text(schedule):
        writer.writerow(actions)
    return out.getvalue()


def _torch_train_rank(rank: int, job: TrainJob, csv_path: str) -> list[float]:
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime

    _, num_stages, M = shape(job.schedule)
    owners = stage_owners(job.schedule)
    # our own stage builder: the same layers and cut as on our runtime (no pacing, no split wrapper needed: PyTorch
    # splits the backward itself, in stage_backward_input / stage_backward_weight)
    mine = build_stages(rank, PipelineJob([[a for a in acts if a.kind == FORWARD] for acts in job.schedule], job.model,
                                          job.batch_size, pace_s=None), owners, num_stages)
    stages = [PipelineStage(stage.layers, index, num_stages, torch.device("cpu"))
              for index, stage in sorted(mine.items())]
    schedule = _PipelineScheduleRuntime(stages, M, loss_fn=job.model.loss)
    schedule._load_csv(csv_path, format="compute_only")
    adam = torch.optim.Adam([p for s in mine.values() for p in s.layers.parameters()], lr=job.lr)
    losses = []
    for step in range(job.steps):
        inputs, targets = step_batches(job.model, job.batch_size, 1, step)
        adam.zero_grad(set_to_none=True)
        args = (inputs[0],) if 0 in mine else ()
        kwargs = {"target": targets[0], "losses": []} if num_stages - 1 in mine else {}
        schedule.step(*args, **kwargs)
        adam.step()
        if "losses" in kwargs:
            losses.append(float(torch.stack([loss.detach() for loss in kwargs["losses"]]).mean()))
    dist.barrier()
    return losses


def train_torch(schedule="1f1b", P: int = 4, M: int = 4, v: int = 1, steps: int = 10, batch_size: int = 16,
                lr: float = 1e-2, model: TinyGPT | None = None, timeout_s: float = 180.0,
                csv_text: str | None = None) -> list[float]:
    """``labs.course.capstone.train``'s training, with the schedule run by PyTorch's ``_PipelineScheduleRuntime``;
    the loss of each step.

    ``csv_text``: the CSV PyTorch loads (default ``to_csv(schedule)``), e.g. your own export of the same lists.
    """
    model = model or TinyGPT()
    actions = checked_schedule(schedule, P, M, v, model, batch_size)
    folder = tempfile.mkdtemp(prefix="labs-torch-csv-")
    path = os.path.join(folder, "schedule.csv")
    with open(path, "w") as handle:
        handle.write(to_csv(actions) if csv_text is None else csv_text)
    try:
        results = launch(_torch_train_rank, world_size=len(actions),
                         args=(TrainJob(actions, model, steps, batch_size, lr), path), timeout_s=timeout_s)
    finally:
        os.remove(path)
        os.rmdir(folder)
    return results[stage_owners(actions)[shape(actions)[1] - 1]]
