"""One call from a notebook or the CLI: validate a schedule, run it on real ranks, check it, compare with theory.

    run = labs.run_pipeline("1f1b", P=4, M=8, pace_ms=(10, 20))
    run.idle_fraction, run.idle_fraction_theory, run.max_grad_error, run.trace.peak_activations
    run.step_time_s, run.simulated_step_time_s, run.ideal_time_s    # measured, simulated, compute only
    run = labs.run_pipeline("1f1b", P=2, M=4, T=2, D=2)            # 8 ranks: tensor and data parallel too
    run.grid, run.trace.traffic     # the rank layout; bytes inside a stage, between stages, across replicas
    run.trace.peak_memory_bytes, run.trace.memory   # per rank: the most live tensor bytes at once, and their split

``schedule`` is a name (``naive``, ``gpipe``, ``1f1b``, ``interleaved``, ``zb-h1``, ``zb-v``) or a hand-written
schedule (lists of actions or strings such as ``"0F0"``). The run's trace comes back from the workers; the parent
computes the one-process reference gradients, the simulated timeline (the same schedule with the same costs and
network) and the closed-form idle fraction, so every number is checked against something independent of the
runtime. "Ideal" has one meaning: the busiest rank's compute alone, no bubble, no message.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from dataclasses import dataclass, field

from . import checks
from .errors import InputError, ScheduleError
from .models.cut import check_microbatches, split_layers
from .models.protocol import check_model
from .models.reference import max_grad_error, reference_gradients
from .models.toy import ToyModel
from .parallel.grid import Grid
from .parallel.tensor import MLPModel
from .runtime.boundary import check_boundaries
from .runtime.devices import check_device, default_backend, under_torchrun
from .runtime.launcher import launch
from .runtime.pacing import stage_paces, three_way
from .runtime.step import PipelineJob, run_rank
from .runtime.transport import uses_tags
from .schedules import (check_blocking_in_order, check_in_order, check_runnable, make, parse, shape, stage_owners,
                        uses_split_backward, validate)
from .theory import idle_fraction
from .timeline.collectives import grid_costs, simulate_grid
from .timeline.costs import Costs, as_network
from .timeline.simulator import ideal_time_s, simulate
from .timeline.trace import Trace

__all__ = ["CLASSIC", "PipelineRun", "run_pipeline"]

CLASSIC = ("naive", "gpipe", "1f1b", "interleaved")  # the schedules whose idle fraction is (P-1)/(vM+P-1)


@dataclass
class PipelineRun:
    """A checked run: the measured ``trace`` (the median timed step), the ``simulated`` one (same costs and
    network), the ``costs`` used (a free link: simulate variations with them), losses and the gradient error."""

    name: str
    schedule: list
    P: int
    M: int
    v: int
    trace: Trace
    simulated: Trace  # the same schedule simulated with the same costs and the run's network
    costs: Costs  # the per-stage costs the simulation charged, with a free link
    loss: float
    reference_loss: float
    max_grad_error: float
    step_times_s: list = field(default_factory=list)  # every timed step; ``trace`` is the median one's
    grads: dict | None = None  # the pipeline's gradients, by parameter name (as the one-process model names them)
    grid: Grid | None = None  # None: one rank per pipeline rank (no tensor or data parallelism)
    step_traces: list = field(default_factory=list)  # every timed step's Trace, in order (timing verdicts read the
    # fastest: labs.course.timing)

    @property
    def T(self) -> int:
        return self.grid.T if self.grid else 1

    @property
    def D(self) -> int:
        return self.grid.D if self.grid else 1

    @property
    def idle_fraction(self) -> float:
        """The measured share of the step the ranks sit idle."""
        return self.trace.idle_fraction

    @property
    def idle_fraction_theory(self) -> float:
        """(P-1)/(v*M+P-1) for the classic schedules; for the others, the idle fraction simulated with the run's
        costs and a free link."""
        if self.name in CLASSIC:
            return idle_fraction(self.P, self.M, self.v)
        return simulate(self.schedule, self.costs).idle_fraction

    @property
    def step_time_s(self) -> float:
        return self.trace.step_time_s

    @property
    def simulated_step_time_s(self) -> float:
        return self.simulated.step_time_s

    @property
    def ideal_time_s(self) -> float:
        """The busiest rank's compute time under the run's costs: no bubble, no message."""
        return ideal_time_s(self.schedule, self.costs)

    def summary(self) -> dict:
        """The run as plain data (the command line's ``--json``)."""
        return {"schedule": self.name, "P": self.P, "M": self.M, "v": self.v, "T": self.T, "D": self.D,
                "step_time_s": self.step_time_s, "simulated_step_time_s": self.simulated_step_time_s,
                "ideal_time_s": self.ideal_time_s, "step_over_simulated": self.step_time_s / self.simulated_step_time_s,
                "idle_fraction": self.idle_fraction, "idle_fraction_theory": self.idle_fraction_theory,
                "idle_fraction_per_rank": self.trace.idle_fractions,
                "peak_activations": self.trace.peak_activations,
                "peak_activation_bytes": self.trace.peak_activation_bytes,
                "peak_memory_bytes": self.trace.peak_memory_bytes, "memory": self.trace.memory,
                "bytes_moved": self.trace.bytes_moved, "messages": self.trace.messages,
                "max_grad_error": self.max_grad_error, "loss": self.loss, "reference_loss": self.reference_loss,
                "step_times_s": self.step_times_s, "grid": (self.grid or Grid(self.P)).summary(),
                **self.trace.traffic}


def run_pipeline(schedule="gpipe", P: int = 4, M: int = 8, v: int = 1, layers: int = 8, width: int = 64,
                 batch_size: int = 64, pace_ms: tuple | None = checks.DEFAULT_PACE_MS, warmup_steps: int = 1,
                 timeout_s: float = 60.0,
                 device: str = "cpu", steps: int = 3, transport: str = "auto", network=None, blocking: bool = False,
                 slow_stages: dict | None = None, straggler: tuple | None = None, T: int = 1, D: int = 1,
                 model=None, memory: bool | str = True) -> PipelineRun:
    """Run real pipeline-parallel training steps and check them: ``warmup_steps`` untimed, then ``steps`` timed.

    P pipeline ranks, M micro-batches, v model chunks per rank (a hand-written schedule brings its own). Schedules:
    GPipe (arXiv 1811.06965), 1F1B and interleaved 1F1B (arXiv 2104.04473), ZB-H1 and ZB-V (arXiv 2401.10241).
    ``pace_ms=(F, B)`` pads each layer's forward to F and backward to B milliseconds (default
    ``labs.checks.DEFAULT_PACE_MS``, 10 and 20; None: unpaced, the real compute time); ``(F, I, W)`` paces a split
    backward's I and W apart (a full backward B then takes I+W).

    The run reports the trace of its **median** timed step (by step time), and every step's time in
    ``step_times_s``. Why the median: a step's time can only grow when something outside the pipeline interferes
    (another process takes the core, the OS wakes a sleeping rank late), never shrink, so single steps scatter
    upwards. The median of three ignores one disturbed step whichever it is, where the mean would carry a third of
    it; and it is a real step, so its timeline, idle fraction and activations come from one and the same run (a
    per-event median would mix steps). Timing verdicts read the fastest step instead (``run.step_traces``,
    ``labs.course.timing``): the least disturbed one, since no step can beat its paced schedule.

    ``transport``: "auto" matches messages by tag on gloo and in order on NCCL; "in_order" emulates NCCL's
    first-in-first-out matching on gloo. Either way each rank walks its lowered list (``labs.schedules.lower``), which
    runs every schedule ``validate`` accepts in order too (``blocking`` in order also needs
    ``labs.schedules.check_blocking_in_order``).
    ``memory``: after the timed steps, one more step measures each rank's live tensor bytes from the allocator's view
    (``labs.runtime.ledger``): ``run.trace.peak_memory_bytes`` and ``run.trace.memory`` (the split into parameters,
    gradients, activations, communication buffers, data and temporaries, at the peak and each part's own peak).
    True: that step runs at compute speed (about 50 ms on the toy model); "paced": at the run's pace, so that how
    long a send's payload waits for its receiver (communication bytes) is the timed steps' too; False: none.
    ``network`` (a ``labs.Link`` or ``labs.Network``) makes every message pay its link's cost; ``blocking`` sends and
    receives in action order (``labs.runtime.transport``); ``slow_stages`` {stage: factor} and ``straggler``
    (rank, factor) slow one stage or one rank down (``labs.runtime.pacing``). ``run.simulated`` mirrors all of them.
    ``T`` tensor-parallel ranks and ``D`` data-parallel replicas run the schedule on a grid of P*T*D ranks
    (``labs.parallel.grid``; Megatron-LM, arXiv 1909.08053); the model is then ``labs.parallel.tensor.MLPModel(layers,
    width)`` unless ``model`` (any ``labs.models.PipelineModel``) says otherwise, and each layer split T ways is
    paced at 1/T of the time. With a grid, ``network`` is over global ranks (``labs.Nodes``: one link inside a node,
    another across) and prices the all-reduces too: each lasts at least its ring's modelled time on its group's link,
    which lengthens the action it runs in, and ``run.simulated`` charges the same (``labs.timeline.collectives``).

    Bad input raises an InputError (ScheduleError, ModelError, GridError) saying what to change, before any process
    starts; a failing or hung rank raises RankFailed or LaunchTimeout within seconds.
    """
    name = schedule if isinstance(schedule, str) else "custom"
    timeout_s = checks.positive_seconds("timeout_s", timeout_s)
    pace_s = checks.pace_seconds(pace_ms)
    check_device(device)
    layers = checks.whole_number("layers", layers, 1, checks.MAX_LAYERS)
    width = checks.whole_number("width", width, 1, checks.MAX_WIDTH)
    batch_size = checks.whole_number("batch_size", batch_size, 1, checks.MAX_BATCH)
    steps = checks.whole_number("steps", steps, 1, 100)
    warmup_steps = checks.whole_number("warmup_steps", warmup_steps, 0, 100)
    if isinstance(schedule, str):
        P = _count("the number of pipeline ranks P", P, checks.MAX_RANKS, ": each rank is a process on this machine")
        M = _count("the number of micro-batches M", M, checks.MAX_MICROBATCHES)
        v = _count("virtual stages v", v, checks.MAX_VIRTUAL_STAGES)
        if P * v > layers:  # refused before a large schedule is built
            split_layers(layers, P * v, P=P)
        check_microbatches(batch_size, M)
        actions = make(schedule, P, M, v)
    else:
        actions = parse(schedule)
        P, num_stages, M = shape(actions)
        _count("the schedule's number of ranks", P, checks.MAX_RANKS, ": each rank is a process")
    actions = validate(actions, M=M if isinstance(schedule, str) else None)  # a hand-written one: M inferred
    check_runnable(actions)
    P, num_stages, _ = shape(actions)
    v = num_stages // P
    backend = "nccl" if under_torchrun() and device.startswith("cuda") else default_backend(P)
    if not uses_tags(transport, backend):
        (check_blocking_in_order if blocking else check_in_order)(actions)
    hybrid = T != 1 or D != 1
    if model is None:
        model = MLPModel(num_layers=layers, width=width) if T != 1 else ToyModel(layers, width)
    check_model(model)
    blocks = split_layers(model.num_layers, num_stages, require_equal=num_stages > P, P=P)  # here, not on ranks
    check_microbatches(batch_size, M)
    grid = Grid(P, T, D)
    grid.check(model, batch_size, M, world_size=_torchrun_world_size() if hybrid else None)
    check_boundaries(model, blocks, batch_size // D, M)  # what each stage sends is what the model declares
    pace_s = stage_paces(pace_s, stage_owners(actions), slow_stages, straggler)
    network = as_network(network)
    if network is not None:
        network.check_ranks(grid.size)
        if T > 1 and uses_split_backward(actions):
            raise ScheduleError("a network's all-reduce costs are modelled for a fused backward: with T > 1, run a "
                                "schedule without I and W actions (gpipe, 1f1b, interleaved) or drop the network")
    job = PipelineJob(actions, model, batch_size, pace_s, warmup_steps, device, steps, transport,
                      network=network, blocking=blocking, grid=grid if hybrid else None,
                      memory=_memory_mode(memory))
    results = launch(run_rank, world_size=grid.size, args=(job,), timeout_s=timeout_s)
    step_traces = [Trace([r.traces[i] for r in results]) for i in range(steps)]
    trace = sorted(step_traces, key=lambda t: t.step_time_s)[(steps - 1) // 2]
    replicas, loss = grid.gather(results)
    reference_loss, reference = reference_gradients(model, batch_size)
    costs = _costs(_per_shard(pace_s, T), blocks, trace, uses_split_backward(actions))
    message_bytes = 4 * math.prod(model.boundary_shape(batch_size // (M * D)))
    if hybrid and network is not None:  # all-reduces on the grid's links (labs.timeline.collectives)
        grads = [4 * sum(p.numel() for p in results[grid.rank_of(0, p, 0)].grads.values()) for p in range(P)]
        activation = message_bytes if pace_s is not None else 0  # unpaced: the measured costs hold them already
        simulated = simulate_grid(actions, costs, blocks, T, D, network, grid.rank_of, activation, grads,
                                  message_bytes)
        costs = grid_costs(costs, blocks, stage_owners(actions), T, D, network, grid.rank_of, activation)[0]
    else:
        simulated = simulate(actions, dataclasses.replace(costs, network=network, message_bytes=message_bytes))
    return PipelineRun(name, actions, P, M, v, trace, simulated, costs, loss, reference_loss,
                       max(max_grad_error(grads, reference) for grads in replicas),
                       [t.step_time_s for t in step_traces], replicas[0], grid if hybrid else None, step_traces)


def _memory_mode(memory) -> bool | str:
    if memory not in (True, False, "paced"):
        raise InputError(f"memory is True (measure one step at compute speed), 'paced' (at the run's pace) or False, "
                         f"got {memory!r}")
    return memory


def _per_shard(pace_s, T: int):
    """A layer split T ways is paced at 1/T of the time on each rank (labs.parallel.grid.Place.pace)."""
    if pace_s is None or T == 1:
        return pace_s
    if isinstance(pace_s, list):
        return [tuple(t / T for t in p) for p in pace_s]
    return tuple(t / T for t in pace_s)


def _count(name, value, high, why=""):
    """``checks.whole_number`` for a schedule's counts, raising ScheduleError (they are the schedule's input)."""
    try:
        return checks.whole_number(name, value, 1, high, why)
    except ValueError as problem:
        raise ScheduleError(str(problem)) from None


def _torchrun_world_size() -> int | None:
    """The number of processes torchrun started (None outside torchrun): a grid must match it."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else None


def _costs(pace_s, blocks, trace: Trace, split: bool = False) -> Costs:
    """The per-stage costs: the paced durations, or (unpaced) the mean measured durations of each stage's actions."""
    if pace_s is not None:
        per_stage = pace_s if isinstance(pace_s, list) else [pace_s] * len(blocks)  # a list: one per stage (uneven)
        f, b, w = zip(*(three_way(p) for p in per_stage))  # (F, I, W): Costs charges a full backward B I + W
        if not split:  # nothing split: the whole backward in backward_s
            b, w = [x + y for x, y in zip(b, w)], [0.0] * len(blocks)
        return Costs([t * len(n) for t, n in zip(f, blocks)], [t * len(n) for t, n in zip(b, blocks)],
                     [t * len(n) for t, n in zip(w, blocks)])
    durations: dict = {}
    for events in trace.events:
        for e in events:
            durations.setdefault((e.action.kind, e.action.stage), []).append(e.duration_s)
    # measured: F, and I and W where the schedule splits (a full B then costs their sum), else the whole B
    return Costs(*[[statistics.mean(durations[(kind, s)]) for s in range(len(blocks))]
                   for kind in (("F", "I", "W") if split else ("F", "B"))])
