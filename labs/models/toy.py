"""The toy model the course pipelines, how it is cut into stages, and its one-process reference.

``ToyModel(num_layers=8, width=64)`` is a stack of ``Linear(width, width) -> Tanh`` layers trained with a mean-squared
error against a fixed random target. Every rank builds the same layers from the same seed and keeps only its own,
so no weights travel. ``split_layers`` cuts L layers by depth into contiguous, balanced blocks (one per stage, or
P*v chunks for interleaving: stage s holds block s and runs on rank s mod P).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class ModelError(ValueError):
    """A model or batch that cannot be cut as asked; the message says what to change."""



def seeded(linear: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """``linear`` with weights and bias drawn uniformly in +-1/sqrt(fan-in) from ``generator`` (the same on every rank)."""
    bound = linear.in_features ** -0.5
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear

@dataclass(frozen=True)
class ToyModel:
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
        """A fixed (input, target) batch; every rank can rebuild it, so only activations travel."""
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(batch_size, self.width, generator=generator),
                torch.randn(batch_size, self.width, generator=generator))

    def boundary_shape(self, microbatch_size: int) -> tuple[int, ...]:
        """Shape of what one stage sends the next (and of the gradient that comes back)."""
        return (microbatch_size, self.width)


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target)


def split_layers(num_layers: int, num_chunks: int, require_equal: bool = False) -> list[range]:
    """Cut ``num_layers`` layers into ``num_chunks`` contiguous blocks whose sizes differ by at most one."""
    if num_chunks < 1:
        raise ModelError(f"need at least one stage, got {num_chunks}")
    if num_chunks > num_layers:
        raise ModelError(f"cannot cut {num_layers} layers into {num_chunks} stages: every stage needs at least one "
                         f"layer; use at most {num_layers} stages or a model with more layers")
    if require_equal and num_layers % num_chunks:
        raise ModelError(f"{num_layers} layers do not divide into {num_chunks} equal chunks (P*v): interleaving "
                         f"needs equal chunks, so choose a layer count that is a multiple of {num_chunks}")
    base, extra = divmod(num_layers, num_chunks)
    blocks, start = [], 0
    for chunk in range(num_chunks):
        size = base + (1 if chunk < extra else 0)
        blocks.append(range(start, start + size))
        start += size
    return blocks


def check_microbatches(batch_size: int, num_microbatches: int) -> int:
    """The micro-batch size, or a ModelError saying how to choose M."""
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ModelError(f"the number of micro-batches M must be a whole number >= 1, got {num_microbatches!r}")
    if batch_size % num_microbatches:
        raise ModelError(f"a batch of {batch_size} samples does not split into M={num_microbatches} equal "
                         f"micro-batches: choose M dividing {batch_size} or change the batch size")
    return batch_size // num_microbatches


def split_batch(batch: torch.Tensor, num_microbatches: int) -> list[torch.Tensor]:
    check_microbatches(batch.shape[0], num_microbatches)
    return list(batch.chunk(num_microbatches))


def parameter_name(layer_index: int, name: str) -> str:
    """One name per parameter, the same in a stage and in the whole model: ``'3.0.weight'`` is layer 3's Linear."""
    return f"{layer_index}.{name}"


def reference_gradients(model: ToyModel, batch_size: int) -> tuple[float, dict]:
    """Loss and parameter gradients of the whole model on the whole batch, in one process, with no pipeline.

    The pipeline computes ``loss_fn`` per micro-batch, divides by M and accumulates the gradients; with equal
    micro-batches that is the gradient of the mean loss over the batch, computed here in one go.
    """
    layers = nn.Sequential(*model.layers())
    inputs, targets = model.batch(batch_size)
    loss = loss_fn(layers(inputs), targets)
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in layers.named_parameters()}


def max_grad_error(pipeline_grads: dict, reference: dict) -> float:
    """Largest absolute difference between two sets of gradients (every parameter must be present in both)."""
    missing = set(reference) ^ set(pipeline_grads)
    if missing:
        raise AssertionError(f"gradients missing for parameters: {sorted(missing)[:5]}")
    return max(float((pipeline_grads[k] - reference[k]).abs().max()) for k in reference)
