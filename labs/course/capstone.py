"""The capstone: train the tiny GPT for N steps with any schedule on real ranks, and the same in one process.

    losses = train("1f1b", P=4, M=8, steps=10)             # our runtime: 4 processes
    losses = train(my_lists, steps=10)                      # or your own action lists
    reference = train_reference(steps=10, M=8)              # one process, the same maths
    max(abs(a - b) for a, b in zip(losses, reference)) < 1e-5

Each step: the batch of that step (the same on every rank, ``TinyGPT.batch(seed=step + 1)``) is cut into M
micro-batches; the ranks run the schedule (``labs.runtime.step.run_step``: F, B and, for zero-bubble schedules, W);
then every rank runs Adam on its own stages' weights. The loss of a step is the sum over micro-batches of loss/M, as
the last stage computed it. The reference runs the whole model in one process with the same micro-batches (loss/M
each, gradients accumulated) and the same optimizer, so any difference is a pipeline bug or rounding (about 1e-7).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..models.cut import check_microbatches, split_batch, split_layers
from ..models.gpt import TinyGPT
from ..runtime.launcher import launch
from ..runtime.step import PipelineJob, build_stages, run_step
from ..schedules import make, parse, shape, stage_owners, validate

__all__ = ["TrainJob", "checked_schedule", "step_batches", "train", "train_rank", "train_reference"]


@dataclass
class TrainJob:
    """What every rank of a training run needs: the action lists, the model, steps, batch size, learning rate."""

    schedule: list
    model: TinyGPT = field(default_factory=TinyGPT)
    steps: int = 10
    batch_size: int = 16
    lr: float = 1e-2


def step_batches(model: TinyGPT, batch_size: int, M: int, step: int):
    """(inputs, targets) of training step ``step``, each cut into M micro-batches (cloned: their own storage)."""
    inputs, targets = model.batch(batch_size, seed=step + 1)
    return ([x.clone() for x in split_batch(inputs, M)], [y.clone() for y in split_batch(targets, M)])


def train_rank(rank: int, job: TrainJob) -> list[float]:
    """One rank of pipeline training; returns the loss of each step (empty unless it holds the last stage)."""
    _, num_stages, M = shape(job.schedule)
    owners = stage_owners(job.schedule)
    pipeline_job = PipelineJob(job.schedule, job.model, job.batch_size, pace_s=None, warmup_steps=0)
    stages = build_stages(rank, pipeline_job, owners, num_stages)
    adam = torch.optim.Adam([p for s in stages.values() for p in s.layers.parameters()], lr=job.lr)
    losses = []
    for step in range(job.steps):
        inputs, targets = step_batches(job.model, job.batch_size, M, step)
        adam.zero_grad(set_to_none=True)
        _, step_losses = run_step(rank, pipeline_job, stages, owners, num_stages, inputs, targets)
        adam.step()
        if step_losses:
            losses.append(sum(step_losses[m] for m in sorted(step_losses)))
    dist.barrier()
    return losses


def checked_schedule(schedule, P: int, M: int, v: int, model, batch_size: int) -> list:
    """The parsed, validated schedule (a name built for P, M, v, or action lists); ScheduleError or ModelError,
    before any process starts, when it cannot run or the model and batch cannot be cut for it."""
    actions = make(schedule, P, M, v) if isinstance(schedule, str) else parse(schedule)
    actions = validate(actions)
    ranks, num_stages, microbatches = shape(actions)
    split_layers(model.num_layers, num_stages, require_equal=num_stages > ranks)
    check_microbatches(batch_size, microbatches)
    return actions


def train(schedule="1f1b", P: int = 4, M: int = 4, v: int = 1, steps: int = 10, batch_size: int = 16,
          lr: float = 1e-2, model: TinyGPT | None = None, timeout_s: float = 120.0) -> list[float]:
    """Train ``model`` for ``steps`` pipeline steps with ``schedule`` (a name or action lists, any schedule of
    ``labs.schedules``); the loss of each step. Bad input raises before any process starts."""
    model = model or TinyGPT()
    actions = checked_schedule(schedule, P, M, v, model, batch_size)
    results = launch(train_rank, world_size=len(actions), args=(TrainJob(actions, model, steps, batch_size, lr),),
                     timeout_s=timeout_s)
    last = stage_owners(actions)[shape(actions)[1] - 1]
    return results[last]


def train_reference(steps: int = 10, M: int = 4, batch_size: int = 16, lr: float = 1e-2,
                    model: TinyGPT | None = None) -> list[float]:
    """The same training in one process: the whole model, the same micro-batches, loss/M each, the same Adam."""
    model = model or TinyGPT()
    whole = nn.Sequential(*model.layers())
    adam = torch.optim.Adam(whole.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        inputs, targets = step_batches(model, batch_size, M, step)
        adam.zero_grad(set_to_none=True)
        total = 0.0
        for x, y in zip(inputs, targets):
            loss = model.loss(whole(x), y) / len(inputs)
            loss.backward()
            total += float(loss.detach())
        adam.step()
        losses.append(total)
    return losses
