"""Execute one rank's action list with real ``torch.distributed`` point-to-point messages.

``run_rank(rank, job)`` runs inside a launched process (see ``launch.py``). It builds this rank's stages of the toy
model, then walks its list from the schedule without knowing the schedule's name: for ``sFm`` it takes micro-batch
m's input (the batch itself on stage 0, otherwise the activation stage s-1 sent), runs stage s and sends the output
on; the last stage computes the loss (divided by M, so gradients accumulate to the full batch's). For ``sBm`` it
takes the gradient stage s+1 sent back, runs the backward and sends the input's gradient to stage s-1. When the
schedule has ``sWm`` actions (zero bubble), B computes only the input's gradient and W the weights' later, from the
graph B kept (``labs.split_backward``).

Why a valid schedule cannot deadlock here: sends never block (``isend``, completed at the end of the step), and on
gloo every receive of the step is posted up front with a tag naming its action, so messages match whatever order
they arrive in. A rank therefore waits only for data its next action truly needs, which is what ``validate`` checks.
NCCL ignores tags, so there receives are posted when needed, in the rank's action order.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .launch import report, under_torchrun
from .memory import SavedBytes
from .model import ToyModel, loss_fn, parameter_name, split_batch, split_layers
from .pacing import paced, three_way
from .schedules import BACKWARD, FORWARD, WEIGHT, ScheduleError, shape, stage_owners, uses_weight_step
from .split_backward import SplitBackward
from .trace import Event, RankTrace


def _warm_up_autograd() -> None:
    """A first ``backward(output, grad)`` lazily imports sympy & co (0.6 s here). Paying it once in the parent
    means forked ranks inherit the imports instead of each paying it inside the first timed step."""
    y = torch.ones(2, requires_grad=True) * 2
    torch.autograd.backward(y, torch.ones_like(y))


_warm_up_autograd()


@dataclass
class PipelineJob:
    """Everything a rank needs for a step; sent to every rank."""

    schedule: list
    model: ToyModel = field(default_factory=ToyModel)
    batch_size: int = 64
    pace: tuple | None = None  # seconds per layer: (forward, backward) or (forward, B, W)
    warmup_steps: int = 1
    device: str = "cpu"


@dataclass
class RankResult:
    trace: RankTrace
    grads: dict
    losses: dict  # micro-batch -> its share of the loss (last stage only)


class _Links:
    """The messages of one step on one rank: tagged receives, non-blocking sends, byte counts."""

    def __init__(self, rank, actions, owners, num_stages, num_microbatches, shape_, device, trace):
        self.rank, self.owners, self.stages, self.microbatches = rank, owners, num_stages, num_microbatches
        self.shape, self.device, self.trace = shape_, device, trace
        self.via_cpu = dist.get_backend() == "gloo" and device != "cpu"
        self.tagged = dist.get_backend() != "nccl"
        self.local: dict = {}
        self.pending: dict = {}
        self.sends: list = []
        if self.tagged:
            for action in actions:
                source = self._source(action)
                if source is not None and owners[source] != rank:
                    self.pending[(action.kind, action.stage, action.microbatch)] = self._post(action, source)

    def _source(self, action):
        """The stage whose message this action needs, or None."""
        if action.kind == FORWARD and action.stage > 0:
            return action.stage - 1
        if action.kind == BACKWARD and action.stage < self.stages - 1:
            return action.stage + 1
        return None

    def _tag(self, kind: str, stage: int, microbatch: int) -> int:
        return (stage * 2 + (kind == BACKWARD)) * self.microbatches + microbatch

    def _post(self, action, source):
        buffer = torch.empty(self.shape, device="cpu" if self.via_cpu or self.device == "cpu" else self.device)
        tag = self._tag(action.kind, action.stage, action.microbatch) if self.tagged else 0
        return buffer, dist.irecv(buffer, self.owners[source], tag=tag)

    def receive(self, action) -> torch.Tensor:
        key = (action.kind, action.stage, action.microbatch)
        if key in self.local:
            return self.local.pop(key)
        buffer, request = self.pending.pop(key) if key in self.pending else self._post(action, self._source(action))
        started = time.perf_counter()
        request.wait()
        self.trace.wait_time += time.perf_counter() - started
        self.trace.bytes_received += buffer.numel() * buffer.element_size()
        self.trace.messages_received += 1
        return buffer.to(self.device)

    def send(self, tensor: torch.Tensor, kind: str, to_stage: int, microbatch: int) -> None:
        if self.owners[to_stage] == self.rank:
            self.local[(kind, to_stage, microbatch)] = tensor.detach().clone()
            return
        payload = tensor.detach().cpu() if self.via_cpu else tensor.detach().contiguous()
        tag = self._tag(kind, to_stage, microbatch) if self.tagged else 0
        self.sends.append((payload, dist.isend(payload, self.owners[to_stage], tag=tag)))
        self.trace.bytes_sent += payload.numel() * payload.element_size()
        self.trace.messages_sent += 1

    def finish(self) -> None:
        for _, request in self.sends:
            request.wait()
        self.sends.clear()


@dataclass
class Stage:
    layer_indices: range
    layers: torch.nn.Sequential  # the real layers, for naming gradients
    module: torch.nn.Module  # what runs: the layers, paced if asked
    saved: SavedBytes
    split: SplitBackward | None = None  # set when the schedule splits the backward into B and W

    def gradients(self) -> dict:
        return {parameter_name(i, name): p.grad.detach().cpu()
                for i, layer in zip(self.layer_indices, self.layers) for name, p in layer.named_parameters()}


def build_stages(rank: int, job: PipelineJob, owners: dict, num_stages: int) -> dict[int, Stage]:
    """This rank's stages of the model, by stage number."""
    blocks = split_layers(job.model.num_layers, num_stages, require_equal=num_stages > len(job.schedule))
    layers = job.model.layers()
    split = uses_weight_step(job.schedule)
    f, b, w = three_way(job.pace) or (None, 0.0, 0.0)
    stages = {}
    for stage, owner in owners.items():
        if owner == rank:
            n = len(blocks[stage])
            core = torch.nn.Sequential(*[layers[i] for i in blocks[stage]]).to(job.device)
            # split: the forward is paced here, B and W by SplitBackward (so the module's own backward pad is 0)
            module = paced(core, None if job.pace is None else ((f, 0.0) if split else job.pace), n)
            stages[stage] = Stage(blocks[stage], core, module, SavedBytes(core.parameters()),
                                  SplitBackward(core, b * n, w * n) if split else None)
    return stages


def run_rank(rank: int, job: PipelineJob) -> RankResult:
    """Run ``job.warmup_steps`` untimed steps, then one recorded step; return its trace and gradients."""
    world, num_stages, _ = shape(job.schedule)
    if dist.get_world_size() != world:
        raise ScheduleError(f"the schedule has {world} ranks but {dist.get_world_size()} were launched")
    if any(a.kind not in (FORWARD, BACKWARD, WEIGHT) for a in job.schedule[rank]):
        raise ScheduleError("this runtime runs F, B and W actions")
    owners = stage_owners(job.schedule)
    stages = build_stages(rank, job, owners, num_stages)
    inputs, targets = job.model.batch(job.batch_size)
    num_microbatches = max(a.microbatch for acts in job.schedule for a in acts) + 1
    # clone: each micro-batch owns its storage (as a data loader's would), so saved-bytes counts one micro-batch,
    # not the whole batch that a chunk() view shares
    inputs = [x.to(job.device).clone() for x in split_batch(inputs, num_microbatches)]
    targets = [y.to(job.device).clone() for y in split_batch(targets, num_microbatches)]
    for _ in range(job.warmup_steps + 1):
        for stage in stages.values():
            stage.layers.zero_grad(set_to_none=True)
        trace, losses = _step(rank, job, stages, owners, num_stages, inputs, targets)
    grads = {name: grad for stage in stages.values() for name, grad in stage.gradients().items()}
    return RankResult(trace, grads, losses)


def _step(rank, job, stages, owners, num_stages, inputs, targets):
    actions = job.schedule[rank]
    num_microbatches = len(inputs)
    trace = RankTrace(rank=rank)
    dist.barrier()
    links = _Links(rank, actions, owners, num_stages, num_microbatches,
                   job.model.boundary_shape(job.batch_size // num_microbatches), job.device, trace)
    clock_zero = time.perf_counter()
    held, losses, previous = {}, {}, "nothing"
    for action in actions:
        report(f"finished {previous}; now at {action}")
        stage, microbatch = action.stage, action.microbatch
        module, saved, split = stages[stage].module, stages[stage].saved, stages[stage].split
        last = stage == num_stages - 1
        if action.kind == FORWARD:
            x = inputs[microbatch] if stage == 0 else links.receive(action).requires_grad_()
            start = time.perf_counter()
            with saved.counting():
                out = split.forward(module, x, microbatch) if split else module(x)
                if last:  # a model may bring its own loss (labs.gpt); the toy model's is loss_fn
                    out = getattr(job.model, "loss", loss_fn)(out, targets[microbatch]) / num_microbatches
            if last:
                losses[microbatch] = float(out.detach())
            else:
                links.send(out, FORWARD, stage + 1, microbatch)
            held[(stage, microbatch)] = (x, out)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero, saved.total))
        elif action.kind == BACKWARD:
            grad = None if last else links.receive(action)
            start = time.perf_counter()
            x, out = held.pop((stage, microbatch))
            if split:  # B: the input's gradient only; the weights' wait for W
                input_grad = split.backward_input(microbatch, out, grad, x)
            else:
                torch.autograd.backward(out, grad)
                input_grad = x.grad
            if stage > 0:
                links.send(input_grad, BACKWARD, stage - 1, microbatch)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero,
                                      split.kept_bytes(microbatch) if split else 0))
        else:
            start = time.perf_counter()
            split.backward_weight(microbatch)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero))
        previous = str(action)
    report(f"finished {previous}; waiting for its sends to be received")
    links.finish()
    trace.finish = time.perf_counter() - clock_zero
    _align_to_earliest_rank(trace, clock_zero)
    report(f"finished all {len(actions)} actions")
    return trace, losses


def _align_to_earliest_rank(trace: RankTrace, clock_zero: float) -> None:
    """Put every rank's times on one axis: zero is the moment the first rank left the step's barrier.

    Ranks leave a barrier up to about a millisecond apart; measured from its own exit, each rank's timeline would be
    shifted by that much. On one machine ``perf_counter`` is a single clock for all processes, so the ranks agree on
    the earliest exit and count from it. Across machines (torchrun on several hosts) clocks differ: keep each rank's own.
    """
    if under_torchrun() and int(os.environ.get("LOCAL_WORLD_SIZE", "0")) != dist.get_world_size():
        return
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    earliest = torch.tensor([clock_zero], dtype=torch.float64, device=device)
    dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
    offset = clock_zero - float(earliest)
    for event in trace.events:
        event.start += offset
        event.end += offset
    trace.finish += offset
