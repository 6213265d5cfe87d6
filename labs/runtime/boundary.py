"""What one stage sends the next must be what the model declares: checked before any process starts, and again by
every sender before a tensor travels.

A model declares the tensor that crosses every stage boundary (``model.boundary_shape(microbatch_size)``, float32);
receive buffers are allocated from it. A stage that produces something else would otherwise fail far from the cause:
a smaller tensor lands silently in a larger, uninitialised buffer (gloo), a larger one aborts the receiving process,
or another rank raises a matrix-shape error. So:

* ``check_boundaries(model, blocks, batch_size, M)`` runs micro-batch 0 through the model's layers, cut as the ranks
  will cut them, in the parent (no autograd) and compares every boundary with the declaration;
* ``check_message(tensor, ...)`` is the same comparison on the sending rank (``Transport.send``), for shapes that
  depend on the data or runs that skip the parent (torchrun).

Both raise ModelError naming the stage, the shape it produced and the shape the next stage expects.
"""
from __future__ import annotations

import torch

from ..errors import ModelError
from ..schedules import FORWARD, Action, output_target
from .data import Microbatches

__all__ = ["check_boundaries", "check_message"]


def check_message(tensor: torch.Tensor, expected: tuple, stage: int, next_stage: int, what: str,
                  rank: int | None = None, microbatch: int | None = None) -> None:
    """Raise ModelError unless ``tensor`` (``what`` stage ``stage`` sends stage ``next_stage``, e.g. "an activation")
    has the declared shape ``expected`` and dtype float32. ``rank`` and ``microbatch`` go into the message (None: it
    says the check ran in this process, before launch)."""
    if tuple(tensor.shape) == tuple(expected) and tensor.dtype == torch.float32:
        return
    where = " (run in this process before launch)" if rank is None else f" (rank {rank})"
    which = "" if microbatch is None else f" for micro-batch {microbatch}"
    shape = tuple(tensor.shape)
    raise ModelError(f"stage {stage}{where} produced {what} of shape {shape} ({tensor.dtype}){which}, but stage "
                     f"{next_stage} expects {tuple(expected)} (torch.float32), the model's boundary_shape"
                     f"({expected[0] if expected else ''}): make stage {stage}'s output match boundary_shape, or make "
                     f"boundary_shape return {shape} if that is what every stage sends")


def check_boundaries(model, blocks: list, batch_size: int, M: int) -> None:
    """Run micro-batch 0 through ``model.layers()`` cut into ``blocks`` (one range of layer indices per stage) and
    raise ModelError at the first boundary whose tensor is not ``model.boundary_shape(batch_size // M)`` (float32)."""
    layers = model.layers()
    expected = tuple(model.boundary_shape(batch_size // M))
    x = Microbatches(model, batch_size, M, 0)[0]
    with torch.no_grad():
        for stage, block in enumerate(blocks[:-1]):
            for i in block:
                x = layers[i](x)
            next_stage = output_target(Action(stage, FORWARD, 0), len(blocks))
            check_message(x, expected, stage, next_stage, "an activation")
