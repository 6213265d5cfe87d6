"""Data parallelism: D replicas of the same pipeline, each on its share of the batch, averaged at the end of the step.

Each replica runs the whole schedule on B/D samples, so its gradients are those of its share's mean loss. After the
last action of the step, every rank sums its gradients with the ranks that hold the same shard in the other replicas
(its data-parallel group) and divides by D: the mean over the replicas is the gradient of the whole batch's mean loss,
and every replica leaves the step with the same gradients (so the same weights after the optimizer step).

All of a rank's gradients travel as one flat bucket in one all-reduce, as ``DistributedDataParallel`` packs them
into buckets. Unlike DDP, nothing overlaps with the backward here: the all-reduce starts after the rank's last action,
so its time shows at the end of the timeline, where it is easy to see and to measure.

    all_reduce_gradients(parameters, group, D)   # inside a rank, after the step's last backward
"""
from __future__ import annotations

import torch

from .tensor import all_reduce

__all__ = ["all_reduce_gradients"]


def all_reduce_gradients(parameters, group, D: int) -> None:
    """Average the ``.grad`` of ``parameters`` over the D replicas (the ranks of ``group``), in one flat all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    bucket = torch.cat([g.reshape(-1) for g in grads])
    all_reduce(bucket, group, kind="dp")
    bucket /= D
    offset = 0
    for g in grads:
        g.copy_(bucket[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
