"""Paced compute: pad a stage's real forward and backward to fixed durations, so a CPU behaves like a device.

On a 2-core laptop four ranks cannot compute at once: a measured timeline would show the CPU's contention, not the
pipeline. ``Paced(stage, forward_s, backward_s)`` runs the stage's real maths, then sleeps for the rest of
``forward_s``; its backward, whoever runs it (our runtime or ``torch.distributed.pipelining``), is padded to
``backward_s`` the same way. Sleeping ranks leave the cores to the ranks that compute, so the timeline is the
schedule's, and the numbers (outputs, gradients) stay exactly those of the unpaced stage. Pacing is off on a GPU.

How the backward is padded: a marker on the stage's output notes when its backward begins; a marker on its input
(made to require grad through a zero-size anchor, so it also fires on the first stage) sleeps until the deadline.

**Collectives** (tensor parallelism, notebook 10): an all-reduce with a modelled cost
(``labs.parallel.tensor.COLLECTIVE_S``) lengthens the action it runs in by that cost: the deadline moves by the
modelled seconds spent inside the forward (or the backward), as an all-reduce on a device adds to its layer's time.

**Uneven stages and stragglers**: one stage, or one rank, that takes longer than the others.

    labs.run_pipeline("1f1b", slow_stages={2: 3.0})     # stage 2's layers take 3x the pace (an unbalanced cut)
    labs.run_pipeline("1f1b", straggler=(1, 2.0))        # every action of rank 1 takes 2x (a slow device)

Both become one (forward, backward) pace per stage (``stage_paces``), which the runtime pads each stage to and the
simulator charges (``Costs`` with per-stage lists), so a measured and a simulated timeline of the same unbalanced
pipeline can be compared. With one stage per rank the two look alike in a timeline; they differ in their cure (move
layers to other stages, or replace the slow device). With several chunks per rank a straggler slows all of them.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..errors import InputError
from ..parallel import tensor as _collectives

__all__ = ["Paced", "paced", "parse_factor", "sleep_until", "stage_paces", "three_way"]

_SPIN_S = 0.0005


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``deadline`` (seconds), spinning the last half millisecond: a plain
    sleep here overshoots by 0.2 ms on average, up to 1 ms."""
    left = deadline - time.perf_counter()
    if left > _SPIN_S:
        time.sleep(left - _SPIN_S)
    while time.perf_counter() < deadline:
        pass


class _Clock:
    backward_started = 0.0
    collective_s = 0.0  # modelled all-reduce seconds when the backward began (labs.parallel.tensor.COLLECTIVE_S)


class _MarkBackwardStart(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output, clock):
        ctx.clock = clock
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        ctx.clock.backward_started = time.perf_counter()
        ctx.clock.collective_s = _collectives.COLLECTIVE_S
        return grad, None


class _PadBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, anchor, clock, seconds):
        ctx.clock, ctx.seconds = clock, seconds
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad):
        spent = _collectives.COLLECTIVE_S - ctx.clock.collective_s  # modelled all-reduces inside this backward
        sleep_until(ctx.clock.backward_started + ctx.seconds + spent)
        return (grad if ctx.needs_input_grad[0] else None), None, None, None


class Paced(nn.Module):
    """``module`` whose forward takes at least ``forward_s`` and whose backward at least ``backward_s`` seconds."""

    def __init__(self, module: nn.Module, forward_s: float, backward_s: float):
        super().__init__()
        self.module, self.forward_s, self.backward_s = module, forward_s, backward_s
        self._clock = _Clock()
        self._anchor = torch.zeros((), requires_grad=True)  # not a parameter: optimisers and state_dict skip it

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        start, collective_s = time.perf_counter(), _collectives.COLLECTIVE_S
        if torch.is_grad_enabled():
            inputs = _PadBackward.apply(inputs, self._anchor, self._clock, self.backward_s)
        output = self.module(inputs)
        sleep_until(start + self.forward_s + _collectives.COLLECTIVE_S - collective_s)
        if torch.is_grad_enabled():
            output = _MarkBackwardStart.apply(output, self._clock)
        return output


def three_way(pace_s: tuple | None) -> tuple[float, float, float] | None:
    """``(forward, backward)`` or ``(forward, input-grad I, weight-grad W)`` seconds per layer, as (F, I, W).

    A split backward (``labs.runtime.split_backward``) pads I and W separately; a full backward B takes I + W (as
    ``labs.timeline.Costs`` charges it). Given only two numbers, the backward splits evenly between I and W.
    """
    if pace_s is None:
        return None
    if len(pace_s) == 3:
        return tuple(float(t) for t in pace_s)
    forward_s, backward_s = pace_s
    return float(forward_s), backward_s / 2, backward_s / 2


def paced(module: nn.Module, pace_s: tuple | None, num_layers: int) -> nn.Module:
    """Wrap a stage of ``num_layers`` layers so each layer costs ``pace_s = (forward_s, backward_s)`` (or
    ``(forward_s, i_s, w_s)``: a full backward then takes i_s + w_s); None: as is."""
    if pace_s is None:
        return module
    forward_s, b_s, w_s = three_way(pace_s)
    return Paced(module, forward_s * num_layers, (b_s + w_s) * num_layers)


def _factor(value, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{what} must be a number > 0 (a slowdown factor, e.g. 2.0 for twice as slow), got {value!r}")
    return float(value)


def stage_paces(pace_s: tuple | None, owners: dict[int, int], slow_stages: dict | None = None,
                straggler: tuple | None = None):
    """The (forward, backward) pace in seconds of every stage, or ``pace_s`` itself when nothing is uneven.

    ``owners`` maps stage -> rank; ``slow_stages`` {stage: factor}; ``straggler`` (rank, factor). Raises InputError,
    before any process starts, on a stage or rank the run does not have, or on uneven stages without pacing.
    """
    if not slow_stages and straggler is None:
        return pace_s
    if pace_s is None:
        raise InputError("slow_stages and straggler slow down paced compute: give pace_ms=(F, B) (not None)")
    factors = {stage: 1.0 for stage in owners}
    for stage, factor in (slow_stages or {}).items():
        if stage not in factors:
            raise InputError(f"slow_stages names stage {stage!r}, but the run has stages 0..{len(owners) - 1}")
        factors[stage] *= _factor(factor, f"slow_stages[{stage}]")
    if straggler is not None:
        if not (isinstance(straggler, (tuple, list)) and len(straggler) == 2):
            raise InputError(f"straggler is (rank, factor), e.g. (1, 2.0); got {straggler!r}")
        rank, factor = straggler
        if rank not in set(owners.values()):
            raise InputError(f"straggler names rank {rank!r}, but the run has ranks 0..{max(owners.values())}")
        for stage, owner in owners.items():
            if owner == rank:
                factors[stage] *= _factor(factor, "the straggler's factor")
    return [tuple(t * factors[s] for t in pace_s) for s in sorted(owners)]


def parse_factor(text: str, what: str) -> tuple[int, float]:
    """``"INDEX:FACTOR"`` (the command line's form), e.g. ``"2:3"`` -> (2, 3.0); InputError otherwise."""
    try:
        index, factor = text.split(":")
        return int(index), float(factor)
    except ValueError:
        raise InputError(f"{what} is INDEX:FACTOR, e.g. 2:3 for three times slower; got {text!r}")
