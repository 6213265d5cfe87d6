"""How a model and a batch are cut: layers into contiguous stages, a batch into M micro-batches.

``split_layers`` cuts L layers by depth into contiguous, balanced blocks (one per stage, or P·v chunks for
interleaving: stage s holds block s and runs on rank s mod P). ``parameter_name`` names a parameter the same in a
stage and in the whole model, so a pipeline's gradients can be compared with one process's.
"""
from __future__ import annotations

import torch

from ..errors import ModelError

__all__ = ["ModelError", "check_microbatches", "parameter_name", "split_batch", "split_layers"]


def split_layers(num_layers: int, num_chunks: int, require_equal: bool = False, P: int | None = None) -> list[range]:
    """Cut ``num_layers`` layers into ``num_chunks`` contiguous blocks whose sizes differ by at most one (the
    earlier blocks take the extra layers).

    ``P`` (the pipeline ranks the chunks run on, ``num_chunks = P·v``) only words the errors: they then speak in
    P·v model chunks and name the setting to change (``-v/--virtual-stages``, ``-P``, ``--layers``). Raises
    ModelError for fewer than one chunk, more chunks than layers, or (``require_equal``, interleaving) layers that do
    not divide into equal chunks.
    """
    if num_chunks < 1:
        raise ModelError(f"need at least one stage, got {num_chunks}")
    v = num_chunks // P if P and num_chunks % P == 0 else None
    if num_chunks > num_layers:
        if v is None:
            raise ModelError(f"cannot cut {num_layers} layers into {num_chunks} stages: every stage needs at least "
                             f"one layer; use at most {num_layers} stages or a model with more layers")
        raise ModelError(f"cannot cut {num_layers} layers into {_chunks(P, v)}: every {'chunk' if v > 1 else 'stage'} "
                         f"needs at least one layer; {_fewer(num_layers, P, v)}")
    if require_equal and num_layers % num_chunks:
        what = _chunks(P, v).replace("model chunks", "equal model chunks") if v else f"{num_chunks} equal chunks (P*v)"
        choices = [w for w in range(2, num_layers // P + 1) if num_layers % (P * w) == 0] if v else []
        fix = f"use v = {' or '.join(map(str, choices))} (-v/--virtual-stages) or " if choices else "choose "
        raise ModelError(f"{num_layers} layers do not divide into {what}: interleaving needs equal chunks, so {fix}"
                         f"a layer count that is a multiple of {num_chunks} (--layers)")
    base, extra = divmod(num_layers, num_chunks)
    blocks, start = [], 0
    for chunk in range(num_chunks):
        size = base + (1 if chunk < extra else 0)
        blocks.append(range(start, start + size))
        start += size
    return blocks


def _chunks(P: int, v: int) -> str:
    """The words for P·v chunks: "9 stages (P=9 pipeline ranks, one stage each)" or "P·v = 4·3 = 12 model chunks"."""
    if v == 1:
        return f"{P} stages (P={P} pipeline ranks, one stage each)"
    return f"P·v = {P}·{v} = {P * v} model chunks (v={v} chunks on each of P={P} pipeline ranks)"


def _fewer(num_layers: int, P: int, v: int) -> str:
    """What to change when P·v chunks exceed the layers: v, P or the model."""
    options = [f"v <= {num_layers // P} (-v/--virtual-stages)"] if v > 1 and num_layers // P >= 2 else []
    if num_layers // v >= 1:
        options.append(f"P <= {num_layers // v} pipeline ranks (-P)")
    return f"use {' or '.join(options)}, or a model with at least {P * v} layers (--layers)"


def check_microbatches(batch_size: int, M: int) -> int:
    """The micro-batch size batch_size / M; ModelError saying how to choose M when M does not divide the batch."""
    if not isinstance(M, int) or M < 1:
        raise ModelError(f"the number of micro-batches M must be a whole number >= 1, got {M!r}")
    if batch_size % M:
        raise ModelError(f"a batch of {batch_size} samples does not split into M={M} equal "
                         f"micro-batches: choose M dividing {batch_size} or change the batch size")
    return batch_size // M


def split_batch(batch: torch.Tensor, M: int) -> list[torch.Tensor]:
    """``batch`` (first dimension: samples) cut into M equal micro-batches (views); ModelError if M does not divide."""
    check_microbatches(batch.shape[0], M)
    return list(batch.chunk(M))


def parameter_name(layer_index: int, name: str) -> str:
    """One name per parameter, the same in a stage and in the whole model: ``'3.0.weight'`` is layer 3's Linear."""
    return f"{layer_index}.{name}"
