"""One call from a notebook or the CLI: validate a schedule, run it on real ranks, check it, compare with theory.

    run = labs.run_pipeline("1f1b", stages=4, microbatches=8, pace_ms=(5, 10))
    run.bubble_fraction, run.bubble_fraction_theory, run.max_grad_error, run.trace.peak_activations
    run = labs.run_pipeline("1f1b", stages=2, microbatches=4, tensor_parallel=2, data_parallel=2)   # 8 ranks
    run.grid, run.trace.traffic     # the rank layout; bytes inside a stage, between stages, across replicas

``schedule`` is a name (``naive``, ``gpipe``, ``1f1b``, ``interleaved``, ``zb-h1``, ``zb-v``) or a hand-written schedule (lists of actions
or strings such as ``"0F0"``). The run's trace comes back from the workers; the parent computes the one-process
reference gradients, the ideal time (the same schedule simulated with the same costs and a free link) and the
closed-form bubble, so every number is checked against something independent of the runtime.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from dataclasses import dataclass, field

from . import checks
from .parallel.grid import Grid
from .runtime.launcher import MAX_RANKS, default_backend, launch, under_torchrun
from .timeline.costs import TransportSpec, as_network
from .models.toy import ToyModel, check_microbatches, max_grad_error, reference_gradients, split_layers
from .runtime.pacing import three_way
from .runtime.step import RUNNABLE_KINDS, PipelineJob, run_rank, uses_tags
from .schedules import ScheduleError, make, parse, shape, stage_owners, uses_weight_step, validate
from .parallel.tensor import MLPModel
from .runtime.transport import check_in_order
from .timeline.simulator import Costs, idle_fraction, simulate
from .timeline.trace import Trace
from .uneven import stage_paces


@dataclass
class PipelineRun:
    name: str
    schedule: list
    stages: int
    microbatches: int
    virtual_stages: int
    trace: Trace
    ideal: Trace  # the same schedule simulated with the same costs and a free link
    loss: float
    reference_loss: float
    max_grad_error: float
    step_times: list = field(default_factory=list)  # every timed step; ``trace`` is the median one's
    simulated: Trace | None = None  # the same schedule simulated with the same costs, network included
    grads: dict | None = None  # the pipeline's gradients, by parameter name (as the one-process model names them)
    grid: Grid | None = None  # None: one rank per pipeline rank (no tensor or data parallelism)

    @property
    def bubble_fraction(self) -> float:
        return self.trace.idle_fraction

    @property
    def bubble_fraction_theory(self) -> float:
        """(P-1)/(v*M+P-1) for the named schedules; the simulated idle fraction for a hand-written one."""
        if self.name in ("naive", "gpipe", "1f1b", "interleaved"):
            return idle_fraction(self.stages, self.microbatches, self.virtual_stages)
        return self.ideal.idle_fraction

    @property
    def step_time(self) -> float:
        return self.trace.step_time

    @property
    def ideal_time(self) -> float:
        return self.ideal.step_time

    def summary(self) -> dict:
        return {"schedule": self.name, "stages": self.stages, "microbatches": self.microbatches,
                "virtual_stages": self.virtual_stages, "step_time_s": self.step_time,
                "ideal_time_s": self.ideal_time, "step_over_ideal": self.step_time / self.ideal_time,
                "bubble_fraction": self.bubble_fraction, "bubble_fraction_theory": self.bubble_fraction_theory,
                "bubble_fraction_per_rank": self.trace.idle_fractions,
                "peak_activations": self.trace.peak_activations,
                "peak_activation_bytes": self.trace.peak_activation_bytes,
                "bytes_moved": self.trace.bytes_moved, "messages": self.trace.messages,
                "max_grad_error": self.max_grad_error, "loss": self.loss, "reference_loss": self.reference_loss,
                "step_times_s": self.step_times, "grid": (self.grid or Grid(self.stages)).summary(),
                **self.trace.traffic}


def run_pipeline(schedule="gpipe", stages: int = 4, microbatches: int = 8, virtual_stages: int = 1,
                 layers: int = 8, width: int = 64, batch_size: int = 64, pace_ms: tuple | None = (5, 10),
                 warmup_steps: int = 1, timeout: float = 60.0, device: str = "cpu", steps: int = 3,
                 transport: str = "auto", network=None, blocking: bool = False, slow_stages: dict | None = None,
                 straggler: tuple | None = None, tensor_parallel: int = 1, data_parallel: int = 1,
                 model=None) -> PipelineRun:
    """Run real pipeline-parallel training steps and check them: ``warmup_steps`` untimed, then ``steps`` timed.

    ``pace_ms=(F, B)`` pads each layer's forward to F and backward to B milliseconds (None: unpaced, the real
    compute time); ``(F, B, W)`` paces a split backward's B and W apart (a fused backward then takes B+W).
    ``stages`` is the number of ranks P; with ``virtual_stages`` v each rank holds v chunks.

    The run reports the trace of its **median** timed step (by step time), and every step's time in ``step_times``.
    Why the median: a step's time can only grow when something outside the pipeline interferes (another process
    takes the core, the OS wakes a sleeping rank late), never shrink, so single steps scatter upwards. The median of
    three ignores one disturbed step whichever it is, where the mean would carry a third of it; and it is a real
    step, so its timeline, idle fraction and activations come from one and the same run (a per-event median would
    mix steps). The minimum would pick the luckiest step, which is not what a learner's machine typically does.

    ``transport``: "auto" matches messages by tag on gloo and in order on NCCL; "in_order" emulates NCCL's
    first-in-first-out matching on gloo. In order, the schedule must pass ``labs.runtime.transport.check_in_order``.
    ``network`` (a ``labs.Link`` or ``labs.Network``) makes every message pay its link's cost; ``blocking`` sends and
    receives in action order (``labs.timeline.costs``); ``slow_stages`` {stage: factor} and ``straggler`` (rank, factor)
    slow one stage or one rank down (``labs.uneven``). ``run.simulated`` mirrors all of them.
    ``tensor_parallel`` T and ``data_parallel`` D run the schedule on a grid of P*T*D ranks (``labs.parallel.grid``); the
    model is then ``labs.parallel.tensor.MLPModel(layers, width)`` unless ``model`` says otherwise, and each layer
    split T ways is paced at 1/T of the time.
    """
    name = schedule if isinstance(schedule, str) else "custom"
    timeout = checks.positive_seconds("timeout", timeout)
    pace = checks.pace_seconds(pace_ms)
    checks.check_device(device)
    layers = checks.whole_number("layers", layers, 1, checks.MAX_LAYERS)
    width = checks.whole_number("width", width, 1, checks.MAX_WIDTH)
    batch_size = checks.whole_number("batch_size", batch_size, 1, checks.MAX_BATCH)
    steps = checks.whole_number("steps", steps, 1, 100)
    warmup_steps = checks.whole_number("warmup_steps", warmup_steps, 0, 100)
    if isinstance(schedule, str):
        stages = _count(ScheduleError, "the number of stages/ranks P", stages, MAX_RANKS,
                        ": each rank is a process on this machine")
        microbatches = _count(ScheduleError, "the number of micro-batches M", microbatches, checks.MAX_MICROBATCHES)
        virtual_stages = _count(ScheduleError, "virtual stages v", virtual_stages, checks.MAX_VIRTUAL_STAGES)
        if stages * virtual_stages > layers:  # refused before a large schedule is built
            split_layers(layers, stages * virtual_stages)
        check_microbatches(batch_size, microbatches)
        actions = make(schedule, stages, microbatches, virtual_stages)
    else:
        actions = parse(schedule)
        stages, num_stages, microbatches = shape(actions)
        _count(ScheduleError, "the schedule's number of ranks", stages, MAX_RANKS, ": each rank is a process")
        virtual_stages = num_stages // stages
    actions = validate(actions, num_microbatches=microbatches)
    unknown = sorted({a.kind for acts in actions for a in acts} - set(RUNNABLE_KINDS))
    if unknown:
        raise ScheduleError(f"the schedule has {'/'.join(unknown)} actions, but the runtime runs only "
                            f"{'/'.join(RUNNABLE_KINDS)} actions: simulate it (labs.timeline.simulator) or drop them")
    ranks, num_stages, _ = shape(actions)
    virtual_stages = num_stages // ranks
    backend = "nccl" if under_torchrun() and device.startswith("cuda") else default_backend(ranks)
    if not uses_tags(transport, backend):
        check_in_order(actions)
    hybrid = tensor_parallel != 1 or data_parallel != 1
    if model is None:
        model = MLPModel(num_layers=layers, width=width) if tensor_parallel != 1 else ToyModel(layers, width)
    blocks = split_layers(model.num_layers, num_stages, require_equal=num_stages > ranks)  # fails here, not on ranks
    check_microbatches(batch_size, microbatches)
    grid = Grid(ranks, tensor_parallel, data_parallel)
    grid.check(model, batch_size, microbatches, world_size=_torchrun_world_size() if hybrid else None)
    pace = stage_paces(pace, stage_owners(actions), slow_stages, straggler)
    network = as_network(network)
    if network is not None:
        network.check_ranks(ranks)
    job = PipelineJob(actions, model, batch_size, pace, warmup_steps, device, steps, transport,
                      links=TransportSpec(network, blocking), grid=grid if hybrid else None)
    results = launch(run_rank, world_size=grid.size, args=(job,), timeout=timeout)
    step_traces = [Trace([r.traces[i] for r in results]) for i in range(steps)]
    trace = sorted(step_traces, key=lambda t: t.step_time)[(steps - 1) // 2]
    replicas, loss = grid.gather(results)
    reference_loss, reference = reference_gradients(model, batch_size)
    costs = _costs(_per_shard(pace, tensor_parallel), blocks, trace, uses_weight_step(actions))
    ideal = simulate(actions, costs)
    message_bytes = 4 * math.prod(model.boundary_shape(batch_size // microbatches))
    simulated = simulate(actions, dataclasses.replace(costs, network=network, message_bytes=message_bytes))
    return PipelineRun(name, actions, ranks, microbatches, virtual_stages, trace, ideal, loss, reference_loss,
                       max(max_grad_error(grads, reference) for grads in replicas),
                       [t.step_time for t in step_traces], simulated, replicas[0], grid if hybrid else None)


def _per_shard(pace, tensor_parallel: int):
    """A layer split T ways is paced at 1/T of the time on each rank (labs.parallel.grid.Place.pace)."""
    if pace is None or tensor_parallel == 1:
        return pace
    if isinstance(pace, list):
        return [tuple(t / tensor_parallel for t in p) for p in pace]
    return tuple(t / tensor_parallel for t in pace)


def _count(error, name, value, high, why=""):
    try:
        return checks.whole_number(name, value, 1, high, why)
    except ValueError as problem:
        raise error(str(problem)) from None


def _torchrun_world_size() -> int | None:
    """The number of processes torchrun started (None outside torchrun): a grid must match it."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else None


def _costs(pace, blocks, trace: Trace, split: bool = False) -> Costs:
    """The per-stage costs: the paced durations, or (unpaced) the mean measured durations of each stage's actions."""
    if pace is not None:
        per_stage = pace if isinstance(pace, list) else [pace] * len(blocks)  # a list: one pace per stage (uneven)
        f, b, w = zip(*(three_way(p) for p in per_stage))
        if not split:
            b, w = [x + y for x, y in zip(b, w)], [0.0] * len(blocks)
        return Costs([t * len(n) for t, n in zip(f, blocks)], [t * len(n) for t, n in zip(b, blocks)],
                     [t * len(n) for t, n in zip(w, blocks)])
    durations: dict = {}
    for events in trace.events:
        for e in events:
            durations.setdefault((e.action.kind, e.action.stage), []).append(e.duration)
    return Costs(*[[statistics.mean(durations[(kind, s)]) for s in range(len(blocks))]
                   for kind in (("F", "B", "W") if split else ("F", "B"))])
