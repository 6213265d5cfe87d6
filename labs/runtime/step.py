"""Execute one rank's action list with real ``torch.distributed`` point-to-point messages.

``run_rank(rank, job)`` runs inside a launched process (see ``launcher.py``). It builds this rank's stages of the
model (any ``labs.models.PipelineModel``), then walks its list from the schedule without knowing the schedule's name:
for ``sFm`` it takes micro-batch m's input (the batch itself on stage 0, otherwise the activation stage s-1 sent),
runs stage s and sends the output on; the last stage computes the loss (divided by M, so gradients accumulate to the
full batch's). For ``sBm`` it takes the gradient stage s+1 sent back, runs the whole backward and sends the input's
gradient to stage s-1. ``sIm`` does the same but computes only the input's gradient, and ``sWm`` the weights'
later, from the graph I kept (zero bubble, arXiv 2401.10241; ``labs.runtime.split_backward``). The choice is per
action: a stage with any I records its layers' outputs on F, and a B there runs I's and W's work back to back, so
one schedule may mix full and split backwards (PyTorch's DualPipeV does). Which stage receives an action's output
comes from ``labs.schedules.lowering``, through the ``Transport``.

Why a valid schedule cannot deadlock here: sends never block (``isend``), and each rank posts its receives where
``labs.schedules.lower`` places them (in each peer's send order, no later than the action that needs them), so
messages match right whether they are tagged (gloo) or matched first in, first out (NCCL), and a rank waits only for
data its next action truly needs, which is what ``validate`` checks (see ``transport.py``).

Memory follows the schedule (issue 15): a receive buffer exists from its place in the lowered list to its consumer,
a send's payload until its send completes, and the data one micro-batch at a time (``data.py``); ``job.memory``
adds one untimed step after the timed ones (at compute speed, or at their pace with "paced"), measured by
``labs.runtime.ledger.MemoryLedger``.

Timed steps: ``job.warmup_steps`` untimed steps, then ``job.steps`` recorded ones, each with the garbage collector
off (see ``_quiet_gc``). ``labs.schedules.RUNNABLE_KINDS`` says which action kinds this runtime executes;
``run_pipeline`` checks a schedule against it before any process starts.
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..models.cut import parameter_name, split_layers
from ..models.toy import ToyModel
from ..parallel.grid import Place
from ..schedules import (BACKWARD, FORWARD, INPUT, WEIGHT, check_blocking_in_order, check_in_order, check_runnable,
                         input_source, output_target, shape, stage_owners)
from ..timeline.trace import Event, RankTrace
from .clock import align_to_earliest_rank
from .data import microbatches, take
from .launcher import report
from .ledger import CountedSaves, measured
from .pacing import Paced, paced, three_way
from .split_backward import SplitBackward
from .transport import Transport, lowered, send_window, uses_tags

__all__ = ["PipelineJob", "RankResult", "Stage", "build_stages", "run_rank", "run_step"]


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
    model: object = field(default_factory=ToyModel)  # a labs.models.PipelineModel
    batch_size: int = 64
    pace_s: tuple | list | None = None  # seconds per layer: (forward, backward) or (forward, I, W); a list: per stage
    warmup_steps: int = 1
    device: str = "cpu"
    steps: int = 1  # timed steps recorded after the warm-up
    transport: str = "auto"  # "tagged", "in_order" (NCCL's matching, also on gloo), or "auto": in order on NCCL
    network: object = None  # a labs.timeline.Network whose link costs every message pays; None: as fast as it goes
    blocking: bool = False  # blocking send/recv in action order (can deadlock, see transport.py)
    grid: object = None  # a labs.parallel.Grid for tensor/data parallel runs; None: one rank per pipeline rank
    memory: bool | str = False  # True: one more step, at compute speed, measured (labs.runtime.ledger); "paced"


@dataclass
class RankResult:
    """What a rank returns: one ``RankTrace`` per timed step, its stages' gradients, its last stage's losses."""

    traces: list  # one RankTrace per timed step
    grads: dict
    losses: dict  # micro-batch -> its share of the loss (last stage only)

    @property
    def trace(self) -> RankTrace:
        return self.traces[-1]


@contextmanager
def _quiet_gc():
    """No garbage-collection pass inside a timed step.

    A forked rank inherits the parent's heap (a notebook kernel: about 300 000 objects) and its collector counters.
    When a full collection falls inside the timed step, it walks that heap, copying every page it touches
    (copy-on-write): 140-200 ms measured here, which made one GPipe step read idle 0.35-0.37 instead of 0.28.
    Whether it falls there depends on the kernel's allocation history, so the first run of a kernel could differ
    from its tenth. ``launch`` freezes the inherited objects in each worker (``gc.freeze``), which makes a full
    collection cost 0.2 ms; here, the young garbage is collected before the step and the collector is off during it.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Stage:
    """One stage on its rank: its layers, the module that runs them (paced if asked), its saved-bytes counter."""

    layer_indices: range
    layers: torch.nn.Sequential  # the real layers, for naming gradients
    module: torch.nn.Module  # what runs: the layers, paced if asked
    saved: CountedSaves
    split: SplitBackward | None = None  # set when the schedule splits this stage's backward into I and W

    def gradients(self) -> dict:
        """{parameter name (as the one-process model names it): gradient on the CPU}."""
        return {parameter_name(i, name): p.grad.detach().cpu()
                for i, layer in zip(self.layer_indices, self.layers) for name, p in layer.named_parameters()}


def build_stages(rank: int, job: PipelineJob, owners: dict, num_stages: int, place=None) -> dict[int, Stage]:
    """This rank's stages of the model, by stage number (``place``: its tensor-parallel shards, labs.parallel.grid).

    Raises ModelError when the layers do not cut into the schedule's stages (equal chunks when interleaved)."""
    blocks = split_layers(job.model.num_layers, num_stages, require_equal=num_stages > len(job.schedule))
    layers = place.layers(job.model) if place else job.model.layers()
    split_stages = {a.stage for acts in job.schedule for a in acts if a.kind in (INPUT, WEIGHT)}
    stages = {}
    for stage, owner in owners.items():
        if owner == rank:
            split = stage in split_stages
            n = len(blocks[stage])
            core = torch.nn.Sequential(*[layers[i] for i in blocks[stage]]).to(job.device)
            pace = job.pace_s[stage] if isinstance(job.pace_s, list) else job.pace_s  # a list: one pace per stage
            pace = place.pace(pace) if place else pace
            f, b, w = three_way(pace) or (None, 0.0, 0.0)
            # split: the forward is paced here, I and W by SplitBackward (so the module's own backward pad is 0)
            module = paced(core, None if pace is None else ((f, 0.0) if split else pace), n)
            stages[stage] = Stage(blocks[stage], core, module, CountedSaves(core.parameters()),
                                  SplitBackward(core, b * n, w * n) if split else None)
    return stages


@contextmanager
def _unpaced(stages, warm_up: bool):
    """A warm-up step runs every code path (messages, autograd, the pacing hooks) at compute speed: it is there to
    pay first-time costs, not to be timed, so padding it to the pace would only cost the learner time."""
    stages = list(stages) if warm_up else []
    padded = ([(s.module, ("forward_s", "backward_s")) for s in stages if isinstance(s.module, Paced)]
              + [(s.split, ("input_s", "weight_s")) for s in stages if s.split])  # a split backward pads I, W
    saved = [(pad, names, [getattr(pad, n) for n in names]) for pad, names in padded]
    for pad, names, _ in saved:
        for name in names:
            setattr(pad, name, 0.0)
    try:
        yield
    finally:
        for pad, names, values in saved:
            for name, value in zip(names, values):
                setattr(pad, name, value)


def run_rank(rank: int, job: PipelineJob) -> RankResult:
    """Run ``job.warmup_steps`` untimed steps, then ``job.steps`` recorded ones (inside a launched rank).

    Returns a ``RankResult``; raises ScheduleError when the schedule does not fit the launched ranks or the transport.
    """
    P, num_stages, M = shape(job.schedule)
    place = Place(rank, P, job.grid, network=job.network)  # pipeline rank, tensor/data-parallel groups (labs.parallel.grid); checks sizes
    check_runnable(job.schedule)
    tagged = uses_tags(job.transport, dist.get_backend())
    if not tagged:
        (check_blocking_in_order if job.blocking else check_in_order)(job.schedule)
    owners = stage_owners(job.schedule)
    stages = build_stages(place.pipeline_rank, job, owners, num_stages, place)
    inputs, targets = microbatches(job.model, job.batch_size, M, place.replica, job.grid.D if job.grid else 1)
    traces, memory = [], None
    for step in range(job.warmup_steps + job.steps + bool(job.memory)):
        measuring = step == job.warmup_steps + job.steps
        for stage in stages.values():
            stage.layers.zero_grad(set_to_none=True)
        unpaced = step < job.warmup_steps or (measuring and job.memory != "paced")
        with _quiet_gc(), _unpaced(stages.values(), unpaced), \
                measured(stages, job.device, measuring) as ledger:
            trace, losses = run_step(rank, job, stages, owners, num_stages, inputs, targets, tagged, place)
        if measuring:
            memory = ledger.summary()
        elif step >= job.warmup_steps:
            traces.append(trace)
    for trace in traces:
        trace.memory = memory
    grads = {name: grad for stage in stages.values() for name, grad in stage.gradients().items()}
    return RankResult(traces, grads, losses)


def run_step(rank, job, stages, owners, num_stages, inputs, targets, tagged=None, place=None):
    """One step of this rank's action list on its ``stages``; (its ``RankTrace``, {micro-batch: loss / M} of its
    last stage). ``inputs``/``targets``: the M micro-batches, indexable (lists, or ``data.Microbatches``), each taken
    when a forward of the first (inputs) or last (targets) stage needs it.

    ``tagged`` and ``place`` default to what ``run_rank`` decides (the job's transport; no grid)."""
    place = place or Place(rank, len(job.schedule), job.grid, network=job.network)
    tagged = uses_tags(job.transport, dist.get_backend()) if tagged is None else tagged
    actions = job.schedule[place.pipeline_rank]
    M = len(inputs)
    microbatch_size = getattr(inputs, "microbatch_size", None) or inputs[0].shape[0]
    trace = RankTrace(rank=rank)
    dist.barrier()
    transport = Transport(rank, lowered(job.schedule)[place.pipeline_rank], place.peers(owners), num_stages, M,
                          job.model.boundary_shape(microbatch_size), job.device, trace, tagged,
                          network=job.network, blocking=job.blocking,
                          window=None if job.blocking else send_window(job.schedule))
    place.start_step()
    clock_zero = time.perf_counter()
    held, losses, previous = {}, {}, "nothing"
    for action in actions:
        report(f"finished {previous}; now at {action}")
        transport.begin(action)  # the receives the lowered list posts before this action
        stage, microbatch = action.stage, action.microbatch
        module, saved, split = stages[stage].module, stages[stage].saved, stages[stage].split
        receives = input_source(action, num_stages) is not None  # from labs.schedules.lowering, like the simulator
        sends = output_target(action, num_stages) is not None
        if action.kind == FORWARD:
            x = transport.receive(action).requires_grad_() if receives else take(inputs[microbatch], job.device)
            start = time.perf_counter()
            with saved.counting():
                out = split.forward(module, x, microbatch) if split else module(x)
                if not sends:  # the last stage: the model's loss of the micro-batch, divided by M
                    out = job.model.loss(out, take(targets[microbatch], job.device)) / M
            if sends:
                transport.send(out, action)
            else:
                losses[microbatch] = float(out.detach())
            held[(stage, microbatch)] = (x, out)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero, saved.total))
        elif action.kind in (INPUT, BACKWARD):
            grad = transport.receive(action) if receives else None
            start = time.perf_counter()
            x, out = held.pop((stage, microbatch))
            if split:  # I: the input's gradient only, the weights' wait for W; B on a split stage: both at once
                input_grad = split.backward_input(microbatch, out, grad, x)
                if action.kind == BACKWARD:
                    split.backward_weight(microbatch)
            else:  # a stage without I's: the plain fused backward
                torch.autograd.backward(out, grad)
                input_grad = x.grad
            if sends:
                if input_grad is None:
                    raise RuntimeError(f"{action}: the input's gradient is None after the backward, so there is "
                                       f"nothing to send to stage {output_target(action, num_stages)}: the received "
                                       f"activation must require grad (x.requires_grad_()) before the forward runs "
                                       f"on it")
                transport.send(input_grad, action)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero,
                                      split.kept_bytes(microbatch) if split else 0))
        elif action.kind == WEIGHT:
            start = time.perf_counter()
            split.backward_weight(microbatch)
            trace.events.append(Event(action, start - clock_zero, time.perf_counter() - clock_zero))
        previous = str(action)
        x = out = grad = input_grad = None  # nothing of a micro-batch outlives the action that let it go
    report(f"finished {previous}; waiting for its sends to be received")
    transport.finish()
    place.finish_step(stages, trace, clock_zero)  # data parallel: gradients averaged over replicas; all-reduces
    trace.finish_s = time.perf_counter() - clock_zero
    align_to_earliest_rank(trace, clock_zero)
    report(f"finished all {len(actions)} actions")
    return trace, losses
