"""Parallelism beside the pipeline: the P x T x D process grid, Megatron's tensor-parallel MLP, data parallelism.

* ``grid``: ``Grid(P, T=1, D=1)`` (which global rank is which), ``Place`` (one rank's groups, inside a worker);
* ``tensor``: the column/row-parallel MLP block and its operators f and g (Megatron-LM, arXiv 1909.08053);
* ``data``: ``all_reduce_gradients``, the replicas' gradient average.
"""
from __future__ import annotations

from .data import all_reduce_gradients
from .grid import Grid, GridError, Place
from .tensor import (MLPModel, copy_to_tensor_parallel, gather_shards, reduce_from_tensor_parallel,
                     tensor_parallel_block)

__all__ = ["Grid", "GridError", "MLPModel", "Place", "all_reduce_gradients", "copy_to_tensor_parallel",
           "gather_shards", "reduce_from_tensor_parallel", "tensor_parallel_block"]
