"""One call from a notebook or the CLI: validate a schedule, run it on real ranks, check it, compare with theory.

    run = labs.run_pipeline("1f1b", stages=4, microbatches=8, pace_ms=(5, 10))
    run.bubble_fraction, run.bubble_fraction_theory, run.max_grad_error, run.trace.peak_activations

``schedule`` is a name (``naive``, ``gpipe``, ``1f1b``, ``interleaved``, ``zb-h1``, ``zb-v``) or a hand-written schedule (lists of actions
or strings such as ``"0F0"``). The run's trace comes back from the workers; the parent computes the one-process
reference gradients, the ideal time (the same schedule simulated with the same costs and a free link) and the
closed-form bubble, so every number is checked against something independent of the runtime.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from .launch import launch
from .model import ToyModel, check_microbatches, max_grad_error, reference_gradients, split_layers
from .runtime import PipelineJob, run_rank
from .pacing import three_way
from .schedules import make, parse, shape, uses_weight_step, validate
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
                "max_grad_error": self.max_grad_error, "loss": self.loss, "reference_loss": self.reference_loss}


def run_pipeline(schedule="gpipe", stages: int = 4, microbatches: int = 8, virtual_stages: int = 1,
                 layers: int = 8, width: int = 64, batch_size: int = 64, pace_ms: tuple | None = (5, 10),
                 warmup_steps: int = 1, timeout: float = 60.0, device: str = "cpu") -> PipelineRun:
    """Run one real pipeline-parallel training step (after ``warmup_steps``) and check it.

    ``pace_ms=(F, B)`` pads each layer's forward to F and backward to B milliseconds (None: unpaced, the real
    compute time); ``(F, B, W)`` paces a split backward's B and W apart (a fused backward then takes B+W). ``stages`` is the number of ranks P; with ``virtual_stages`` v each rank holds v chunks.
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
    virtual_stages = num_stages // ranks
    model = ToyModel(num_layers=layers, width=width)
    blocks = split_layers(layers, num_stages, require_equal=num_stages > ranks)  # bad cuts fail here, not on ranks
    check_microbatches(batch_size, microbatches)
    pace = None if pace_ms is None else tuple(t / 1000 for t in pace_ms)
    job = PipelineJob(actions, model, batch_size, pace, warmup_steps, device)
    results = launch(run_rank, world_size=ranks, args=(job,), timeout=timeout)
    trace = Trace([r.trace for r in results])
    grads = {k: v for r in results for k, v in r.grads.items()}
    loss = sum(v for r in results for v in r.losses.values())
    reference_loss, reference = reference_gradients(model, batch_size)
    ideal = simulate(actions, _costs(pace, blocks, trace, uses_weight_step(actions)))
    return PipelineRun(name, actions, ranks, microbatches, virtual_stages, trace, ideal, loss, reference_loss,
                       max_grad_error(grads, reference))


def _costs(pace, blocks, trace: Trace, split: bool = False) -> Costs:
    """The per-stage costs: the paced durations, or (unpaced) the mean measured durations of each stage's actions."""
    if pace is not None:
        f, b, w = three_way(pace)
        if not split:
            b, w = b + w, 0.0
        return Costs([f * len(n) for n in blocks], [b * len(n) for n in blocks], [w * len(n) for n in blocks])
    durations: dict = {}
    for events in trace.events:
        for e in events:
            durations.setdefault((e.action.kind, e.action.stage), []).append(e.duration)
    return Costs(*[[statistics.mean(durations[(kind, s)]) for s in range(len(blocks))]
                   for kind in (("F", "B", "W") if split else ("F", "B"))])
