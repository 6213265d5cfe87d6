"""A rank's data, one micro-batch at a time: the first stage's inputs and the last stage's targets, made when asked.

    inputs, targets = microbatches(model, batch_size=64, M=8)     # nothing made yet
    x = inputs[3]                                                 # micro-batch 3, its own tensor

A rank that cut ``model.batch(batch_size)`` into M micro-batches up front would hold the whole batch for the whole
step: at a fixed micro-batch size that grows with M, on the two ranks that hold the first and the last stage. Here
micro-batch m is made when its forward asks for it, with **the same numbers** as ``model.batch``:

* the toy model's batch (``ToyModel.batch``, also ``MLPModel``'s) is two ``torch.randn`` draws, inputs then targets,
  from one seeded generator. Drawing the same stream in consecutive pieces gives the same values when every piece
  holds a multiple of 16 numbers (torch's CPU normal fill works 16 at a time; measured with torch 2.13), so
  micro-batch m is drawn on its own, the generator kept between calls (taking micro-batches in order costs one draw
  each; an earlier one restarts the stream). Whether this reproduces ``model.batch`` is **checked once**, before the
  first step (``Microbatches.exact``);
* any other model (or a shape where the check fails): micro-batch m is cut from ``model.batch`` each time it is asked
  for; the batch then lives only during that call.
"""
from __future__ import annotations

import torch

from ..models.toy import ToyModel
from .ledger import label

__all__ = ["Microbatches", "microbatches", "take"]


class Microbatches:
    """Micro-batch m (0 .. M-1) of ``part`` (0: inputs, 1: targets) of ``model.batch(batch_size, seed)``, restricted
    to ``rows`` rows from ``offset`` (a data-parallel replica's share), as its own tensor. ``len()`` is M."""

    def __init__(self, model, batch_size: int, M: int, part: int, offset: int = 0, rows: int | None = None,
                 seed: int = 1):
        self.model, self.batch_size, self.M, self.part, self.seed = model, batch_size, M, part, seed
        self.offset, self.rows = offset, batch_size if rows is None else rows
        self.microbatch_size = self.rows // M
        self.width = getattr(model, "width", None)
        self._generator, self._next_row = None, 0
        self.exact = getattr(type(model), "batch", None) is ToyModel.batch and self.width is not None
        if self.exact:  # the stream reproduces model.batch exactly? checked once, before any step
            whole = model.batch(batch_size, seed)[part][offset:offset + self.rows]
            self.exact = all(torch.equal(self._draw(m), whole[m * self.microbatch_size:(m + 1) * self.microbatch_size])
                             for m in range(M))
            self._generator = None

    def __len__(self) -> int:
        return self.M

    def __getitem__(self, m: int) -> torch.Tensor:
        if not 0 <= m < self.M:
            raise IndexError(f"micro-batch {m} of {self.M}")
        if not self.exact:
            start = self.offset + m * self.microbatch_size
            return self.model.batch(self.batch_size, self.seed)[self.part][start:start + self.microbatch_size].clone()
        return self._draw(m)

    def _draw(self, m: int) -> torch.Tensor:
        row = self.part * self.batch_size + self.offset + m * self.microbatch_size  # rows of `width` numbers
        if self._generator is None or self._next_row > row:
            self._generator, self._next_row = torch.Generator().manual_seed(self.seed), 0
        while self._next_row < row:  # skip to the micro-batch, one micro-batch-sized piece alive at a time
            piece = min(self.microbatch_size, row - self._next_row)
            torch.randn(piece, self.width, generator=self._generator)
            self._next_row += piece
        self._next_row += self.microbatch_size
        return torch.randn(self.microbatch_size, self.width, generator=self._generator)


def microbatches(model, batch_size: int, M: int, replica: int = 0, D: int = 1) -> tuple[Microbatches, Microbatches]:
    """(inputs, targets) of data-parallel replica ``replica`` of ``D``, each indexable by micro-batch (0 .. M-1)."""
    rows = batch_size // D
    return tuple(Microbatches(model, batch_size, M, part, offset=replica * rows, rows=rows) for part in (0, 1))


def take(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """A micro-batch of inputs or targets on ``device``, entered as data in the memory ledger when one records."""
    return label(tensor.to(device), "data")
