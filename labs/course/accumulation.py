"""Gradient accumulation on one process, and data parallelism on top of it: the maths a pipeline's micro-batches do.

    grads = accumulate_gradients(model, inputs, targets, M)       # M micro-batches, one at a time
    grads = data_parallel_gradients(ToyModel(), 64, M=4, D=2)     # D real ranks + all_reduce

A pipeline splits the batch into M micro-batches and adds up their gradients, each loss divided by M; gradient
accumulation on a single process does exactly the same sums, one micro-batch after the other. What differs is *when*
the work happens (the pipeline runs different stages of different micro-batches at once) and *what is held* (one
micro-batch's activations at a time here; up to M per stage in GPipe). Data parallelism multiplies the batch again:
each of D replicas (ranks) accumulates its share, then an all-reduce averages the gradients, so the global batch is
micro-batch x M x D.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputError
from ..models.cut import check_microbatches, split_batch
from ..models.toy import ToyModel, loss_fn
from ..runtime.launcher import launch

__all__ = ["accumulate_gradients", "data_parallel_gradients", "microbatch_times"]


def accumulate_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, M: int) -> dict:
    """{parameter name: gradient} of the mean loss over the batch (``inputs``, ``targets``: first dimension the
    samples), computed over M micro-batches one after the other; ModelError when M does not divide the batch."""
    check_microbatches(inputs.shape[0], M)
    model.zero_grad(set_to_none=True)
    for x, y in zip(split_batch(inputs, M), split_batch(targets, M)):
        (loss_fn(model(x), y) / M).backward()  # /M: the sum of M micro-batch means is M times the batch mean
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _replica(rank: int, model: ToyModel, batch_size: int, M: int) -> dict:
    D = dist.get_world_size()
    layers = nn.Sequential(*model.layers())
    inputs, targets = model.batch(batch_size)
    share = batch_size // D
    grads = accumulate_gradients(layers, inputs[rank * share:(rank + 1) * share],
                                 targets[rank * share:(rank + 1) * share], M)
    for grad in grads.values():  # the mean over replicas: what DistributedDataParallel's all-reduce computes
        dist.all_reduce(grad)
        grad /= D
    return grads


def data_parallel_gradients(model: ToyModel, batch_size: int, M: int, D: int, timeout_s: float = 60.0) -> dict:
    """Each of D real ranks (replicas) accumulates M micro-batches of its share of the batch; all-reduce; rank 0's
    gradients (all ranks hold the same). InputError when the batch does not split over D replicas x M."""
    if batch_size % D:
        raise InputError(f"a batch of {batch_size} does not split over D={D} replicas")
    check_microbatches(batch_size // D, M)
    return launch(_replica, world_size=D, args=(model, batch_size, M), timeout_s=timeout_s)[0]


def microbatch_times(M_values=(1, 2, 4, 8, 16, 32, 64), batch_size: int = 256, width: int = 512, layers: int = 2,
                     repeats: int = 7) -> dict:
    """{M: seconds} to run forward + backward of a batch of ``batch_size`` samples through ``layers`` toy layers of
    ``width``, cut into M micro-batches one after the other: one process, one thread, unpaced (the real compute).

    The median of ``repeats`` timings per M. A device that computed every sample at the same cost would give the
    same time for every M; a real one does not (fixed costs per call, small matrices using the hardware badly):
    Narayanan et al. 2021 (arXiv 2104.04473, section 3.4). InputError when an M does not divide the batch.
    """
    import statistics
    import time

    from ..models.memory import toy_stage
    for M in M_values:
        check_microbatches(batch_size, M)
    stage = toy_stage(layers, width)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = {}
        for M in M_values:
            x = torch.randn(batch_size // M, width, requires_grad=True)

            def once():
                for _ in range(M):
                    stage(x).sum().backward()
            once()  # warm-up: allocations of this size
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                once()
                samples.append(time.perf_counter() - start)
            times[M] = statistics.median(samples)
        return times
    finally:
        torch.set_num_threads(threads)
