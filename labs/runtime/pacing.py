"""Paced compute: pad a stage's real forward and backward to fixed durations, so a CPU behaves like a device.

On a 2-core laptop four ranks cannot compute at once: a measured timeline would show the CPU's contention, not the
pipeline. ``Paced(stage, forward_s, backward_s)`` runs the stage's real maths, then sleeps for the rest of
``forward_s``; its backward, whoever runs it (our runtime or ``torch.distributed.pipelining``), is padded to
``backward_s`` the same way. Sleeping ranks leave the cores to the ranks that compute, so the timeline is the
schedule's, and the numbers (outputs, gradients) stay exactly those of the unpaced stage. Pacing is off on a GPU.

How the backward is padded: a marker on the stage's output notes when its backward begins; a marker on its input
(made to require grad through a zero-size anchor, so it also fires on the first stage) sleeps until the deadline.
"""
from __future__ import annotations

import time

import torch
from torch import nn


_SPIN_S = 0.0005


def sleep_until(deadline: float) -> None:
    """Sleep, then spin the last half millisecond: a plain sleep here overshoots by 0.2 ms on average, up to 1 ms."""
    left = deadline - time.perf_counter()
    if left > _SPIN_S:
        time.sleep(left - _SPIN_S)
    while time.perf_counter() < deadline:
        pass


class _Clock:
    backward_started = 0.0


class _MarkBackwardStart(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output, clock):
        ctx.clock = clock
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        ctx.clock.backward_started = time.perf_counter()
        return grad, None


class _PadBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, anchor, clock, seconds):
        ctx.clock, ctx.seconds = clock, seconds
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad):
        sleep_until(ctx.clock.backward_started + ctx.seconds)
        return (grad if ctx.needs_input_grad[0] else None), None, None, None


class Paced(nn.Module):
    """``module`` whose forward takes at least ``forward_s`` and whose backward at least ``backward_s`` seconds."""

    def __init__(self, module: nn.Module, forward_s: float, backward_s: float):
        super().__init__()
        self.module, self.forward_s, self.backward_s = module, forward_s, backward_s
        self._clock = _Clock()
        self._anchor = torch.zeros((), requires_grad=True)  # not a parameter: optimisers and state_dict skip it

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        if torch.is_grad_enabled():
            inputs = _PadBackward.apply(inputs, self._anchor, self._clock, self.backward_s)
        output = self.module(inputs)
        sleep_until(start + self.forward_s)
        if torch.is_grad_enabled():
            output = _MarkBackwardStart.apply(output, self._clock)
        return output


def three_way(pace: tuple | None) -> tuple[float, float, float] | None:
    """``(forward, backward)`` or ``(forward, input-grad B, weight-grad W)`` per layer, as (F, B, W).

    A split backward (``labs.runtime.split_backward``) pads B and W separately; a fused backward takes B + W. Given only
    two numbers, the backward splits evenly between B and W.
    """
    if pace is None:
        return None
    if len(pace) == 3:
        return tuple(float(t) for t in pace)
    forward_s, backward_s = pace
    return float(forward_s), backward_s / 2, backward_s / 2


def paced(module: nn.Module, pace: tuple | None, num_layers: int) -> nn.Module:
    """Wrap a stage of ``num_layers`` layers so each layer costs ``pace = (forward_s, backward_s)`` (or
    ``(forward_s, b_s, w_s)``: a fused backward then takes b_s + w_s); None: as is."""
    if pace is None:
        return module
    forward_s, b_s, w_s = three_way(pace)
    return Paced(module, forward_s * num_layers, (b_s + w_s) * num_layers)
