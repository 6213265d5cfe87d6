"""Activation memory: what autograd keeps for the backward, what checkpointing saves, and what a big model needs.

    out, nbytes = saved_bytes(stage, x)                      # bytes autograd saved during stage(x)
    out, nbytes = saved_bytes(checkpointed(stage), x)        # the same stage under activation checkpointing
    plain_s, ckpt_s = backward_seconds_pair(stage, checkpointed(stage), x)   # median backward times, alternated
    f_s, b_s, ckpt_b_s = recompute_seconds(stage, checkpointed(stage), x)  # forward, backward, checkpointed backward

``saved_bytes`` counts the way the runtime does (``labs.runtime.step``): every tensor autograd packs for the backward,
each storage once (a Linear's input and the previous Tanh's output are the same tensor), parameters excluded. The
closed forms these measurements are checked against (``toy_stage_bytes``, the GPT-3 175B calculator of notebook 06)
are in ``labs.theory``.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .toy import ToyModel

__all__ = ["Checkpointed", "SavedBytes", "backward_seconds_pair", "checkpointed", "recompute_seconds", "saved_bytes",
           "toy_stage"]


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
    """``module`` under activation checkpointing: the forward keeps only its input; the backward recomputes the rest."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        # use_reentrant=False: the variant PyTorch recommends; it works with saved-tensor hooks and inputs that
        # do not require grad, and it is what the counting above sees (only the input is kept).
        return checkpoint(self.module, x, use_reentrant=False)


def checkpointed(module: nn.Module) -> nn.Module:
    """``module`` under activation checkpointing (``Checkpointed``)."""
    return Checkpointed(module)


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
    """Median seconds of (plain forward, plain backward, checkpointed backward), measured alternately.

    The three are timed in turn, ``repeats`` times after one untimed round, so that a burst of load from elsewhere
    slows all of them alike. ``threads`` (default 1) pins torch's intra-op threads for the measurement and restores
    them after: with one thread a core kept busy by another process slows every kernel the same way, instead of
    making a two-thread kernel wait for its slower half. ``(F + B) / B`` predicts the checkpointed backward's cost.
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
    return tuple(statistics.median(t) for t in times)
