"""Tensor parallelism the Megatron way: an MLP block split over T ranks, and the two operators that make it exact.

A block is ``Linear(h, 4h) -> GELU -> Linear(4h, h)``. Split over the T ranks of a tensor-parallel group:

* the first linear **by columns** (its output features): rank t holds rows t*4h/T ... of the (4h, h) weight and
  the same slice of the bias, and computes its own 4h/T slice of the hidden activation from the full input. GELU
  acts element by element, so it runs on the slice with no communication;
* the second linear **by rows** (its input features): rank t holds columns t*4h/T ... of the (h, 4h) weight and
  multiplies its hidden slice by them: a *partial* sum of the output. Summing the T partial sums (an all-reduce)
  gives the full output; the bias is added once, after the sum, so every rank holds it whole.

Two operators make the forward and the backward exact (Shoeybi et al. 2019, "Megatron-LM", §3, ``f`` and ``g``):

* ``f = copy_to_tensor_parallel`` before the column-parallel linear: identity forward (every rank already has the
  full input); all-reduce backward (each rank's slice contributes a partial gradient of the input: sum them);
* ``g = reduce_from_tensor_parallel`` after the row-parallel linear: all-reduce forward (sum the partial outputs);
  identity backward (the output's gradient is the same on every rank, and each partial sum's gradient is it).

They are conjugate: each is the other with forward and backward swapped. Per block and micro-batch that is one
all-reduce of a (b, h) tensor forward and one backward; the model's first block skips ``f`` (its input is the data,
whose gradient nobody needs). ``all_reduce`` records the bytes and time of each into ``RECORDER`` when the runtime
listens (``labs.parallel.grid.Place``), so a trace shows the traffic inside a stage apart from the messages between
stages.

**Modelled cost.** On this CPU an all-reduce of a few hundred bytes takes well under a millisecond, whatever cluster
it stands for. When the run has a network (``labs.timeline.Nodes``: NVLink inside a node, InfiniBand across),
``Place`` sets ``LINKS`` to the link each kind of group runs at, and every all-reduce lasts at least its modelled
time, ``Link.all_reduce_s(bytes, n)`` (a floor: the real one counts when it is longer). The modelled seconds add up
in ``COLLECTIVE_S``, which paced compute (``labs.runtime.pacing``) adds to the action they ran in, as on a device,
instead of hiding them in the padding. ``MODELLED = False`` turns the floor off (the tests' negative control).

    layers = MLPModel(num_layers=8, width=16).layers(tp_rank=1, T=2, group=tp_group)   # rank 1's shards
    grads = gather_shards([grads_of_rank_0, grads_of_rank_1])                                # the full gradients
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..models.toy import ToyModel, seeded

__all__ = ["COLLECTIVE_S", "ColumnParallelLinear", "CopyToTensorParallel", "LINKS", "MLPBlock", "MLPModel",
           "MODELLED", "RECORDER", "ReduceFromTensorParallel", "RowParallelLinear", "all_reduce",
           "copy_to_tensor_parallel", "gather_shards", "modelled_s", "reduce_from_tensor_parallel", "shard_dim",
           "tensor_parallel_block"]

RECORDER: list | None = None  # when a list, each all-reduce appends (kind, start, end, bytes); the runtime sets it
LINKS: dict = {}  # kind ("tp", "dp") -> the labs.timeline.Link its group's ring runs at; set by Place, {}: no model
MODELLED = True  # False: all-reduces cost only their real time (a test's negative control)
COLLECTIVE_S = 0.0  # modelled all-reduce seconds so far in this process (paced compute reads its growth)


def modelled_s(kind: str, size_bytes: int, n: int) -> float:
    """The modelled seconds of one all-reduce of ``size_bytes`` over n ranks on the ``kind`` group's link; 0 when the
    run has no network (or ``MODELLED`` is off)."""
    link = LINKS.get(kind) if MODELLED else None
    return 0.0 if link is None else link.all_reduce_s(size_bytes, n)


def _wait_until(deadline: float) -> None:
    """Sleep to ``deadline`` (perf_counter seconds), spinning the last half millisecond (as labs.runtime.pacing)."""
    while (left := deadline - time.perf_counter()) > 0:
        if left > 0.0005:
            time.sleep(left - 0.0005)


def all_reduce(tensor: torch.Tensor, group, kind: str = "tp") -> torch.Tensor:
    """Sum ``tensor`` over ``group`` in place (and return it), recording bytes and time if the runtime listens.

    ``kind``: "tp" (inside a stage) or "dp" (across replicas), as the trace's ``collectives`` name them. With a
    modelled link (``LINKS``) it lasts at least the ring's modelled time, which is added to ``COLLECTIVE_S``."""
    global COLLECTIVE_S
    start = time.perf_counter()
    dist.all_reduce(tensor, group=group)
    size = tensor.numel() * tensor.element_size()
    seconds = modelled_s(kind, size, dist.get_world_size(group)) if LINKS else 0.0
    if seconds:
        _wait_until(start + seconds)
        COLLECTIVE_S += seconds
    if RECORDER is not None:
        RECORDER.append((kind, start, time.perf_counter(), size))
    return tensor


class CopyToTensorParallel(torch.autograd.Function):
    """Megatron's ``f``: identity forward, all-reduce backward."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return all_reduce(grad.clone(), ctx.group), None


class ReduceFromTensorParallel(torch.autograd.Function):
    """Megatron's ``g``: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, group):
        return all_reduce(x.clone(), group)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def copy_to_tensor_parallel(x: torch.Tensor, group) -> torch.Tensor:
    """Megatron's ``f`` (arXiv 1909.08053, section 3): identity forward, all-reduce over ``group`` backward."""
    return CopyToTensorParallel.apply(x, group)


def reduce_from_tensor_parallel(x: torch.Tensor, group) -> torch.Tensor:
    """Megatron's ``g`` (arXiv 1909.08053, section 3): all-reduce over ``group`` forward, identity backward."""
    return ReduceFromTensorParallel.apply(x, group)


def _split(tensor: torch.Tensor, dim: int, tp_rank: int, T: int) -> torch.Tensor:
    return tensor.chunk(T, dim=dim)[tp_rank].clone()


class ColumnParallelLinear(nn.Module):
    """This rank's columns (output features) of ``linear``; ``f`` before it unless ``copy_input`` is False."""

    SHARD_DIMS = {"weight": 0, "bias": 0}

    def __init__(self, linear: nn.Linear, tp_rank: int, T: int, group, copy_input: bool = True, f=None):
        super().__init__()
        self.weight = nn.Parameter(_split(linear.weight.detach(), 0, tp_rank, T))
        self.bias = nn.Parameter(_split(linear.bias.detach(), 0, tp_rank, T))
        self.group, self.copy_input, self.f = group, copy_input, f

    def forward(self, x):
        if self.copy_input:
            x = (self.f or copy_to_tensor_parallel)(x, self.group)
        return nn.functional.linear(x, self.weight, self.bias)  # this rank's slice of the output


class RowParallelLinear(nn.Module):
    """This rank's rows (input features) of ``linear``; ``g`` sums the partial outputs; the bias is added once."""

    SHARD_DIMS = {"weight": 1, "bias": None}  # None: every rank holds the whole bias

    def __init__(self, linear: nn.Linear, tp_rank: int, T: int, group, g=None):
        super().__init__()
        self.weight = nn.Parameter(_split(linear.weight.detach(), 1, tp_rank, T))
        self.bias = nn.Parameter(linear.bias.detach().clone())
        self.group, self.g = group, g

    def forward(self, x):
        partial = nn.functional.linear(x, self.weight)  # this rank's share of the output sum
        return (self.g or reduce_from_tensor_parallel)(partial, self.group) + self.bias


class MLPBlock(nn.Module):
    """``Linear(h, 4h) -> GELU -> Linear(4h, h)``; ``up`` and ``down`` are plain or tensor-parallel linears."""

    def __init__(self, up: nn.Module, down: nn.Module):
        super().__init__()
        self.up, self.act, self.down = up, nn.GELU(), down

    def forward(self, x):
        return self.down(self.act(self.up(x)))


def shard_dim(name: str) -> int | None:
    """The dimension along which a block parameter (``'3.up.weight'``) is split; None when every rank holds it."""
    module, param = name.split(".")[-2:]
    return {"up": ColumnParallelLinear, "down": RowParallelLinear}[module].SHARD_DIMS[param]


def tensor_parallel_block(block: MLPBlock, tp_rank: int, T: int, group, first: bool = False, f=None, g=None):
    """Tensor-parallel rank ``tp_rank``'s shard (of T) of ``block`` (arXiv 1909.08053, section 3): ``up`` split by
    columns, ``down`` by rows; ``first``: the model's first block, whose input needs no gradient (no ``f``).
    ``f``, ``g``: replacements for the two operators (default ``copy_to_tensor_parallel``,
    ``reduce_from_tensor_parallel``)."""
    return MLPBlock(ColumnParallelLinear(block.up, tp_rank, T, group, copy_input=not first, f=f),
                    RowParallelLinear(block.down, tp_rank, T, group, g=g))


@dataclass(frozen=True)
class MLPModel:
    """A stack of MLP blocks, a ``labs.models.PipelineModel`` with the toy model's batch, boundary and loss, so the
    runtime cuts it into stages the same way; ``layers(tp_rank, T, group)`` gives one rank's shards."""

    num_layers: int = 8
    width: int = 16
    seed: int = 0

    @property
    def hidden(self) -> int:
        return 4 * self.width

    def layers(self, tp_rank: int = 0, T: int = 1, group=None) -> list[nn.Module]:
        """All blocks (T=1), or tensor-parallel rank ``tp_rank``'s shards of them (T > 1, all-reducing over
        ``group``); the same weights on every rank (seeded)."""
        generator = torch.Generator().manual_seed(self.seed)
        blocks = []
        for index in range(self.num_layers):
            up = seeded(nn.Linear(self.width, self.hidden), generator)
            down = seeded(nn.Linear(self.hidden, self.width), generator)
            block = MLPBlock(up, down)
            blocks.append(block if T == 1 else tensor_parallel_block(block, tp_rank, T, group, first=index == 0))
        return blocks

    batch = ToyModel.batch  # the same (input, target) batch, stage boundary and loss as the toy model of that width
    boundary_shape = ToyModel.boundary_shape
    loss = ToyModel.loss

    def parameters_per_rank(self, T: int = 1, num_stages: int = 1) -> int:
        """Parameters one rank holds: its stage's blocks, each block's two weights and first bias split T ways."""
        h, hidden = self.width, self.hidden
        per_block = (2 * h * hidden + hidden) // T + h
        return per_block * (self.num_layers // num_stages)


def gather_shards(shards: list[dict]) -> dict:
    """Full tensors from the T ranks' shards of the same parameters (in tensor-parallel rank order)."""
    full = {}
    for name, first in shards[0].items():
        dim = shard_dim(name)
        full[name] = first if dim is None else torch.cat([s[name] for s in shards], dim=dim)
    return full
