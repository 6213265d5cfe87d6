"""The toy model the course pipelines: a stack of ``Linear(width, width) -> Tanh`` layers with an MSE loss.

``ToyModel(num_layers=8, width=64)`` is trained with a mean-squared error against a fixed random target. Every rank
builds the same layers from the same seed and keeps only its own, so no weights travel. It is a
``labs.models.PipelineModel``: ``layers()``, ``batch``, ``boundary_shape``, ``loss``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ToyModel", "loss_fn", "seeded"]


def seeded(linear: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """``linear`` with weights and bias drawn uniformly in +-1/sqrt(fan-in) from ``generator`` (the same on every
    rank)."""
    bound = linear.in_features ** -0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The toy model's loss: the mean squared error (a scalar tensor)."""
    return nn.functional.mse_loss(output, target)


@dataclass(frozen=True)
class ToyModel:
    """``num_layers`` layers ``Linear(width, width) -> Tanh``, built from ``seed``."""

    num_layers: int = 8
    width: int = 64
    seed: int = 0

    def layers(self) -> list[nn.Module]:
        """All layers, the same on every rank (built from the seed)."""
        generator = torch.Generator().manual_seed(self.seed)
        layers = []
        for _ in range(self.num_layers):
            linear = seeded(nn.Linear(self.width, self.width), generator)
            layers.append(nn.Sequential(linear, nn.Tanh()))
        return layers

    def batch(self, batch_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed (input, target) batch, each (batch_size, width); every rank can rebuild it, so only activations
        travel."""
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(batch_size, self.width, generator=generator),
                torch.randn(batch_size, self.width, generator=generator))

    def boundary_shape(self, microbatch_size: int) -> tuple[int, ...]:
        """Shape of what one stage sends the next (and of the gradient that comes back): (microbatch_size, width)."""
        return (microbatch_size, self.width)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of a micro-batch (``loss_fn``)."""
        return loss_fn(output, target)
