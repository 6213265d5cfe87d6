"""One call from a notebook or the CLI: validate a schedule, run it on real ranks, check it, compare with theory.

    run = labs.run_pipeline("1f1b", stages=4, microbatches=8, pace_ms=(5, 10))
    run.bubble_fraction, run.bubble_fraction_theory, run.max_grad_error, run.trace.peak_activations
    run = labs.run_pipeline("1f1b", stages=2, microbatches=4, tensor_parallel=2, data_parallel=2)   # 8 ranks
    run.grid, run.trace.traffic     # the rank layout; bytes inside a stage, between stages, across replicas

``schedule`` is a name (``naive``, ``gpipe``, ``1f1b``, ``interleaved``) or a hand-written schedule (lists of actions
or strings such as ``"0F0"``). The run's trace comes back from the workers; the parent computes the one-process
reference gradients, the ideal time (the same schedule simulated with the same costs and a free link) and the
closed-form bubble, so every number is checked against something independent of the runtime.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from .grid import Grid
from .launch import launch
from .model import ToyModel, check_microbatches, max_grad_error, reference_gradients, split_layers
from .runtime import PipelineJob, run_rank
from .tensor_parallel import MLPModel
from .schedules import make, parse, shape, validate
from .simulate import Costs, idle_fraction, simulate
from .trace import Trace


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
                "grid": (self.grid or Grid(self.stages)).summary(), **self.trace.traffic}


def run_pipeline(schedule="gpipe", stages: int = 4, microbatches: int = 8, virtual_stages: int = 1,
                 layers: int = 8, width: int = 64, batch_size: int = 64, pace_ms: tuple | None = (5, 10),
                 warmup_steps: int = 1, timeout: float = 60.0, device: str = "cpu", tensor_parallel: int = 1,
                 data_parallel: int = 1, model=None) -> PipelineRun:
    """Run one real pipeline-parallel training step (after ``warmup_steps``) and check it.

    ``pace_ms=(F, B)`` pads each layer's forward to F and backward to B milliseconds (None: unpaced, the real
    compute time). ``stages`` is the number of ranks P; with ``virtual_stages`` v each rank holds v chunks.
    ``tensor_parallel`` T and ``data_parallel`` D run the schedule on a grid of P*T*D ranks (``labs.grid``); the
    model is then ``labs.tensor_parallel.MLPModel(layers, width)`` unless ``model`` says otherwise, and each layer
    split T ways is paced at 1/T of the time.
    """
    name = schedule if isinstance(schedule, str) else "custom"
    if isinstance(schedule, str):
        actions = make(schedule, stages, microbatches, virtual_stages)
    else:
        actions = parse(schedule)
        stages, num_stages, microbatches = shape(actions)
        virtual_stages = num_stages // stages
    actions = validate(actions, num_microbatches=microbatches)
    ranks, num_stages, _ = shape(actions)
    hybrid = tensor_parallel != 1 or data_parallel != 1
    if model is None:
        model = MLPModel(num_layers=layers, width=width) if tensor_parallel != 1 else ToyModel(layers, width)
    blocks = split_layers(model.num_layers, num_stages, require_equal=num_stages > ranks)  # fails here, not on ranks
    check_microbatches(batch_size, microbatches)
    grid = Grid(ranks, tensor_parallel, data_parallel)
    grid.check(model, batch_size, microbatches, world_size=_torchrun_world_size() if hybrid else None)
    pace = None if pace_ms is None else (pace_ms[0] / 1000, pace_ms[1] / 1000)
    job = PipelineJob(actions, model, batch_size, pace, warmup_steps, device, grid if hybrid else None)
    results = launch(run_rank, world_size=grid.size, args=(job,), timeout=timeout)
    trace = Trace([r.trace for r in results])
    replicas, loss = grid.gather(results)
    reference_loss, reference = reference_gradients(model, batch_size)
    layer_pace = None if pace is None else (pace[0] / tensor_parallel, pace[1] / tensor_parallel)
    ideal = simulate(actions, _costs(layer_pace, blocks, trace))
    return PipelineRun(name, actions, ranks, microbatches, virtual_stages, trace, ideal, loss, reference_loss,
                       max(max_grad_error(grads, reference) for grads in replicas), grid if hybrid else None)


def _torchrun_world_size() -> int | None:
    """The number of processes torchrun started (None outside torchrun): a grid must match it."""
    from .launch import under_torchrun
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else None


def _costs(pace, blocks, trace: Trace) -> Costs:
    """The per-stage costs: the paced durations, or (unpaced) the mean measured durations of each stage's actions."""
    if pace is not None:
        return Costs([pace[0] * len(b) for b in blocks], [pace[1] * len(b) for b in blocks])
    durations: dict = {}
    for events in trace.events:
        for e in events:
            durations.setdefault((e.action.kind, e.action.stage), []).append(e.duration)
    return Costs([statistics.mean(durations[("F", s)]) for s in range(len(blocks))],
                 [statistics.mean(durations[("B", s)]) for s in range(len(blocks))])
