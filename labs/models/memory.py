"""Activation memory: what autograd keeps for the backward, what checkpointing saves, and what a big model needs.

    out, nbytes = saved_bytes(stage, x)                      # bytes autograd saved during stage(x)
    out, nbytes = saved_bytes(checkpointed(stage), x)        # the same stage under activation checkpointing
    labs.run_pipeline("gpipe", P=4, model=RecomputedStages(ToyModel(16), stages=4))   # every stage recomputed
    plain_s, ckpt_s = backward_seconds_pair(stage, checkpointed(stage), x)   # median backward times, alternated
    f_s, b_s, ckpt_b_s = recompute_seconds(stage, checkpointed(stage), x)  # forward, backward, checkpointed backward

``saved_bytes`` counts the way the runtime does (``labs.runtime.step``): every tensor autograd packs for the backward,
each storage once (a Linear's input and the previous Tanh's output are the same tensor), parameters excluded. The
closed forms these measurements are checked against (``toy_stage_bytes``, the GPT-3 175B calculator of notebook 06)
are in ``labs.theory``. ``RecomputedStages`` is the toy model with every pipeline stage checkpointed, for runs whose
memory the runtime's ledger measures (notebook 06).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .cut import split_layers
from .toy import ToyModel

__all__ = ["Checkpointed", "RecomputedStages", "SavedBytes", "backward_seconds_pair", "checkpointed",
           "recompute_seconds", "saved_bytes", "toy_stage"]


class SavedBytes:
    """Counts the bytes autograd keeps for the backward: each storage once, ``exclude`` (parameters) left out.

    ``with counter.counting(): out = stage(x)`` then ``counter.total``. The runtime keeps one per stage and counts
    every forward; ``saved_bytes`` below is the one-off form.
    """

    def __init__(self, exclude):
        self.excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: set = set()
        self.total = 0

    def _pack(self, tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in self.excluded and pointer not in self.seen:
            self.seen.add(pointer)
            self.total += tensor.untyped_storage().nbytes()
        return tensor

    def counting(self):
        """Context for one forward: afterwards ``total`` holds the bytes that forward saved."""
        self.seen, self.total = set(), 0
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)


def saved_bytes(fn, *inputs, exclude=None) -> tuple:
    """Run ``fn(*inputs)`` and return (output, bytes of the tensors autograd saved for the backward).

    ``exclude``: tensors not to count (default: the parameters of ``fn`` when it is a Module).
    """
    if exclude is None:
        exclude = list(fn.parameters()) if isinstance(fn, nn.Module) else []
    counter = SavedBytes(exclude)
    with counter.counting():
        output = fn(*inputs)
    return output, counter.total


class Checkpointed(nn.Module):
    """``module`` under activation checkpointing: the forward keeps only its input; the backward recomputes the rest.

    ``reentrant=False`` (default): PyTorch's recommended form (``use_reentrant=False``), which keeps what the
    recompute rebuilds in its own frame. ``reentrant=True``: the form Megatron-LM's ``tensor_parallel.checkpoint``
    uses (``use_reentrant=True``): the forward runs without autograd and saves the input; the backward reruns the
    forward as an ordinary one, whose saved tensors autograd holds through the saved-tensor hooks like any forward's,
    and backpropagates through it. That form needs an input that requires grad, so a first stage's data gets a
    detached alias that does (the same storage; no gradient leaves the stage anyway).
    """

    def __init__(self, module: nn.Module, reentrant: bool = False):
        super().__init__()
        self.module, self.reentrant = module, reentrant

    def forward(self, x):
        # use_reentrant=False: works with saved-tensor hooks and inputs that do not require grad, and it is what the
        # counting above sees (only the input is kept).
        if self.reentrant:
            return checkpoint(self.module, x if x.requires_grad else x.detach().requires_grad_(), use_reentrant=True)
        return checkpoint(self.module, x, use_reentrant=False)


def checkpointed(module: nn.Module, reentrant: bool = False) -> nn.Module:
    """``module`` under activation checkpointing (``Checkpointed``)."""
    return Checkpointed(module, reentrant)


@dataclass(frozen=True)
class RecomputedStages:
    """``model`` (a ``ToyModel``) cut into ``stages`` blocks of consecutive layers, each block checkpointed: a
    ``labs.models.PipelineModel`` whose stages keep only their input per micro-batch held and rebuild the rest in
    their backward (full activation recomputation, Chen et al. 2016, arXiv:1604.06174; per stage as in GPipe,
    arXiv:1811.06965). Run it with P·v = ``stages``, so that every pipeline stage is one checkpointed block.

    Its ``layers()`` are the blocks (``num_layers`` = ``stages``), built from the toy model's seeded layers, so its
    gradients are the toy model's; its batch, boundary and loss are the toy model's. ``reentrant`` (default True,
    Megatron-LM's form, see ``Checkpointed``) makes what a backward rebuilds autograd's saved tensors, which the
    runtime's memory ledger counts as activations; with False they are the checkpoint's own and count as
    temporaries. Raises ModelError (from ``split_layers``) when ``stages`` does not fit the model's layers.
    """

    model: ToyModel = field(default_factory=ToyModel)
    stages: int = 4
    reentrant: bool = True
    batch = ToyModel.batch  # the toy's own batch, so the runtime draws it one micro-batch at a time, same numbers

    def __post_init__(self):
        split_layers(self.model.num_layers, self.stages)

    @property
    def num_layers(self) -> int:
        return self.stages

    @property
    def width(self) -> int:
        return self.model.width

    def layers(self) -> list[nn.Module]:
        """One checkpointed ``nn.Sequential`` per block of the toy model's layers."""
        layers = self.model.layers()
        return [Checkpointed(nn.Sequential(*[layers[i] for i in block]), self.reentrant)
                for block in split_layers(self.model.num_layers, self.stages)]

    def boundary_shape(self, microbatch_size: int) -> tuple[int, ...]:
        return self.model.boundary_shape(microbatch_size)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.model.loss(output, target)


def toy_stage(layers: int, width: int, seed: int = 0) -> nn.Module:
    """``layers`` of the toy model (Linear + Tanh) as one stage."""
    return nn.Sequential(*ToyModel(num_layers=layers, width=width, seed=seed).layers())


def backward_seconds_pair(first: nn.Module, second: nn.Module, x: torch.Tensor, repeats: int = 9) -> tuple:
    """Median backward times of two modules measured alternately (first, second, first, ...), so that a burst of
    load from elsewhere on the machine slows both alike instead of one of them."""
    times: tuple = ([], [])
    for i in range(repeats + 1):
        for module, bucket in zip((first, second), times):
            module.zero_grad(set_to_none=True)
            loss = module(x).square().mean()
            start = time.perf_counter()
            loss.backward()
            if i:
                bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def recompute_seconds(plain: nn.Module, ckpt: nn.Module, x: torch.Tensor, repeats: int = 9,
                      threads: int | None = 1) -> tuple:
    """Seconds of (plain forward, plain backward, checkpointed backward), measured alternately.

    The three are timed in turn, ``repeats`` times after one untimed round, so that a burst of load from elsewhere
    slows one round's three alike. The backward is the median over rounds; the forward and the checkpointed backward
    are the median of their **per-round ratio** to that round's backward, times it, so that load cancels in the ratios
    that matter (with two busy processes beside it on 2 cores, the ratio of separate medians missed (F + B) / B by up
    to 0.28, the per-round ratios by up to 0.17; one busy process: both within 0.05). ``threads`` (default 1) pins
    torch's intra-op threads for the measurement and restores them after: with one thread a core kept busy by another
    process slows every kernel the same way, instead of making a two-thread kernel wait for its slower half.
    ``(F + B) / B`` predicts the checkpointed backward's cost.
    """
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    times: tuple = ([], [], [])
    try:
        for i in range(repeats + 1):
            for module in (plain, ckpt):
                module.zero_grad(set_to_none=True)
                start = time.perf_counter()
                loss = module(x).square().mean()
                middle = time.perf_counter()
                loss.backward()
                end = time.perf_counter()
                if i and module is plain:
                    times[0].append(middle - start)
                    times[1].append(end - middle)
                elif i:
                    times[2].append(end - middle)
    finally:
        torch.set_num_threads(old)
    forward, backward, checkpointed = times
    b_s = statistics.median(backward)
    return (b_s * statistics.median(f / b for f, b in zip(forward, backward)), b_s,
            b_s * statistics.median(c / b for c, b in zip(checkpointed, backward)))
