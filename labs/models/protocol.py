"""What the runtime needs from a model: ``PipelineModel``, a ``typing.Protocol``.

Any object with these members can be pipelined: ``labs.models.toy.ToyModel``, ``labs.models.gpt.TinyGPT`` and
``labs.parallel.tensor.MLPModel`` all are. Every rank builds the same layers and the same batch from their seeds, so
only activations and gradients travel between ranks; the runtime cuts ``layers()`` into P·v contiguous stages
(``labs.models.cut.split_layers``) and computes ``loss`` on the last stage.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import ModelError

__all__ = ["PipelineModel", "check_model"]


@runtime_checkable
class PipelineModel(Protocol):
    """A model the pipeline runtime can cut into stages and train.

    * ``num_layers``: how many entries ``layers()`` returns;
    * ``layers()``: the model as a list of ``torch.nn.Module``, the same weights on every call (seeded);
    * ``batch(batch_size, seed=1)``: a fixed ``(inputs, targets)`` pair of tensors whose first dimension is the batch;
    * ``boundary_shape(microbatch_size)``: the shape of the tensor one stage sends the next (and of its gradient),
      e.g. ``(microbatch_size, width)``;
    * ``loss(output, target)``: a scalar tensor, the mean loss of a micro-batch (the runtime divides it by M).
    """

    num_layers: int

    def layers(self) -> list: ...

    def batch(self, batch_size: int, seed: int = 1) -> tuple: ...

    def boundary_shape(self, microbatch_size: int) -> tuple: ...

    def loss(self, output, target): ...


def check_model(model) -> None:
    """Raise ModelError naming what ``model`` lacks of ``PipelineModel``, before any process starts."""
    missing = [name for name in ("num_layers", "layers", "batch", "boundary_shape", "loss")
               if not hasattr(model, name)]
    if missing:
        raise ModelError(f"{type(model).__name__} is not a pipeline model: it lacks {', '.join(missing)} (see "
                         f"labs.models.PipelineModel; labs.ToyModel is one)")
