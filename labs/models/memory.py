"""Activation memory: what autograd keeps for the backward, what checkpointing saves, and what a big model needs.

    out, nbytes = saved_bytes(stage, x)                      # bytes autograd saved during stage(x)
    out, nbytes = saved_bytes(checkpointed(stage), x)        # the same stage under activation checkpointing
    plain_s, ckpt_s = backward_seconds_pair(stage, checkpointed(stage), x)   # median backward times, alternated
    f_s, b_s, ckpt_b_s = recompute_seconds(stage, checkpointed(stage), x)  # forward, backward, checkpointed backward
    toy_stage_bytes(layers=2, microbatch_size=8, width=64)   # what one stage of the toy model saves per micro-batch
    transformer_activation_bytes(...)                        # the GPT-3 175B calculator of notebook 06

``saved_bytes`` counts the way the runtime does (``labs.runtime.step``): every tensor autograd packs for the backward,
each storage once (a Linear's input and the previous Tanh's output are the same tensor), parameters excluded.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


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
    return Checkpointed(module)


def toy_stage(layers: int, width: int, seed: int = 0) -> nn.Module:
    """``layers`` of the toy model (Linear + Tanh) as one stage."""
    from ..models.toy import ToyModel
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


def toy_stage_bytes(layers: int, microbatch_size: int, width: int, last_stage: bool = False,
                    bytes_per_value: int = 4) -> int:
    """Bytes one stage of ``layers`` toy layers saves for one micro-batch (the reference for notebook 06).

    Linear saves its input, Tanh its output, and the next Linear's input is that same output: k + 1 distinct
    tensors of micro-batch x width values. The last stage also keeps the loss's target (one more such tensor).
    """
    tensors = layers + 1 + (1 if last_stage else 0)
    return tensors * microbatch_size * width * bytes_per_value


# ---------------------------------------------------------------- the GPT-3 175B calculator

GPT3_175B = dict(layers=96, hidden=12288, heads=96, sequence=2048)


def transformer_layer_bytes(sequence: int, microbatch_size: int, hidden: int, heads: int,
                            recompute: str = "none", tensor_parallel: int = 1, bytes_per_value: int = 2) -> float:
    """Activation bytes of one transformer layer for one micro-batch (Korthikanti et al. 2022, "Reducing activation
    recomputation in large transformer models", Eqs. 1-2 and §5; 16-bit values, dropout masks at 1 byte per value).

    * ``"none"``: 34·s·b·h + 5·a·s²·b (the 5·a·s²·b is the attention scores, softmax and its dropout);
    * ``"selective"``: 34·s·b·h (attention scores recomputed in the backward);
    * ``"full"``: 2·s·b·h (only the layer's input is kept; the whole layer is recomputed).

    ``tensor_parallel`` t > 1 assumes tensor *and* sequence parallelism, which divide every term by t.
    ``bytes_per_value`` scales the 16-bit count (4: float32 activations, about twice the bytes).
    """
    s, b, h, a = sequence, microbatch_size, hidden, heads
    if recompute == "none":
        value = 34 * s * b * h + 5 * a * s * s * b
    elif recompute == "selective":
        value = 34 * s * b * h
    elif recompute == "full":
        value = 2 * s * b * h
    else:
        raise ValueError(f"recompute is 'none', 'selective' or 'full', got {recompute!r}")
    return value / tensor_parallel * bytes_per_value / 2


def transformer_activation_bytes(stages: int = 8, microbatches: int = 32, schedule: str = "gpipe",
                                 microbatch_size: int = 1, recompute: str = "none", layers: int = 96,
                                 hidden: int = 12288, heads: int = 96, sequence: int = 2048,
                                 tensor_parallel: int = 1, bytes_per_value: int = 2) -> float:
    """Peak activation bytes on the first stage (the one that holds the most) of a pipelined transformer.

    Defaults: GPT-3 175B (96 layers, hidden 12288, 96 heads, sequence 2048) on 8 stages, micro-batch size 1.
    Assumes layers split evenly (layers/stages per stage), GPipe holding all M micro-batches and 1F1B holding
    min(P, M) on stage 0; weights, gradients, optimizer state and the embedding/output layers not counted.
    """
    if schedule not in ("gpipe", "1f1b"):
        raise ValueError(f"schedule is 'gpipe' or '1f1b', got {schedule!r}")
    per_microbatch = (layers / stages) * transformer_layer_bytes(sequence, microbatch_size, hidden, heads, recompute,
                                                                  tensor_parallel, bytes_per_value)
    held = microbatches if schedule == "gpipe" else min(stages, microbatches)
    return held * per_microbatch
