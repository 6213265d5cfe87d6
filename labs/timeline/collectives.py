"""What the all-reduces of a P x T x D run cost, in the simulator: the collective side of ``costs``. No torch.

A hybrid run (notebook 10) has two kinds of collectives beside the pipeline's messages:

* **tensor parallel** (Megatron-LM, arXiv 1909.08053, section 3): the T ranks of a stage all-reduce one (b, h)
  activation per block in the forward (g) and one in the backward (f), except the model's first block's f. The T
  ranks run the same actions and meet in every all-reduce, so for the pipeline they behave as one rank whose actions
  last longer: ``grid_costs`` adds each stage's all-reduces to its forward and backward cost (the simulator keeps one
  row per pipeline rank, and needs no change);
* **data parallel**: after its last action every rank all-reduces its gradients with the D replicas of its shard;
  ``simulate_grid`` adds that to each rank's finish (the step ends when the last rank is done) and records it as a
  ``"dp"`` collective of the simulated trace.

Each all-reduce is a ring on the link its group runs at (``Network.group_link``): 2(n-1) latencies plus 2(n-1)/n of
the buffer at the link's bandwidth (``Link.all_reduce_s``). Which group shares a node follows from ``rank_of``, the
grid's numbering (``labs.parallel.Grid.rank_of``, or Megatron-LM's order). ``wire_bytes`` counts a trace's
all-reduces as bytes on the wire.

    costs, sync_s = grid_costs(costs, blocks, owners, T=2, D=1, network=cluster, rank_of=grid.rank_of,
                               activation_bytes=512)
    trace = simulate_grid(schedule, costs, blocks, T=2, network=cluster, rank_of=grid.rank_of, activation_bytes=512)
"""
from __future__ import annotations

import dataclasses

from ..errors import InputError
from ..schedules import stage_owners, validate
from ..theory import ring_wire_bytes
from .costs import Costs, Link, Network
from .simulator import simulate
from .trace import Trace

__all__ = ["grid_costs", "pipeline_network", "simulate_grid", "wire_bytes"]


def _picotron(P: int, T: int):
    """The course's numbering (``labs.parallel.Grid``): rank = (replica * P + pipeline rank) * T + tp rank."""
    return lambda replica, pipeline_rank, tp_rank: (replica * P + pipeline_rank) * T + tp_rank


def grid_costs(costs: Costs, blocks: list, owners: dict, T: int = 1, D: int = 1, network: Network | None = None,
               rank_of=None, activation_bytes: int = 0, gradient_bytes: list | None = None) -> tuple[Costs, list]:
    """(per-stage costs with the tensor-parallel all-reduces added, data-parallel seconds after each rank's last
    action), in seconds.

    ``costs``: per-stage compute on one rank of the stage (already 1/T of the block); ``blocks[s]``: the layer
    indices of stage s; ``owners``: stage -> pipeline rank; ``rank_of(replica, pipeline_rank, tp_rank)``: the global
    rank (default: ``Grid``'s numbering); ``activation_bytes``: one all-reduced (b, h) tensor; ``gradient_bytes[p]``:
    the gradient bytes one rank of pipeline rank p all-reduces across replicas. Without a network, or with T = D = 1,
    the costs come back unchanged and every sync is 0. Raises InputError for T, D < 1.
    """
    for name, value in (("T", T), ("D", D)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} is a whole number >= 1, got {value!r}")
    P = max(owners.values()) + 1
    rank_of = rank_of or _picotron(P, T)
    if network is None:
        return costs, [0.0] * P
    forward, backward = [], []
    for stage, layer_indices in enumerate(blocks):
        owner = owners[stage]
        group = [rank_of(0, owner, t) for t in range(T)]
        each = network.group_link(group, activation_bytes).all_reduce_s(activation_bytes, T)
        skips_f = 1 if 0 in layer_indices else 0  # the model's first block: its input needs no gradient, no f
        forward.append(costs.of("F", stage) + len(layer_indices) * each)
        backward.append(costs.of("B", stage) + (len(layer_indices) - skips_f) * each)
    sync = []
    for p in range(P):
        size = (gradient_bytes or [0] * P)[p]
        group = [rank_of(d, p, 0) for d in range(D)]
        sync.append(network.group_link(group, size).all_reduce_s(size, D))
    return dataclasses.replace(costs, forward_s=forward, backward_s=backward), sync


def pipeline_network(network: Network, P: int, rank_of) -> Network:
    """The links between pipeline ranks (the simulator's rows) as the grid places them: pipeline rank p is global
    rank ``rank_of(0, p, 0)``; its tensor-parallel peers send on links of the same kind, at the same time."""
    ranks = [rank_of(0, p, 0) for p in range(P)]
    return Network(Link(), {(p, q): network.link(ranks[p], ranks[q]) for p in range(P) for q in range(p + 1, P)})


def simulate_grid(schedule, costs: Costs, blocks: list, T: int = 1, D: int = 1, network: Network | None = None,
                  rank_of=None, activation_bytes: int = 0, gradient_bytes: list | None = None,
                  message_bytes: int = 0) -> Trace:
    """The simulated step of ``schedule`` on a P x T x D grid, one row per pipeline rank (arguments as
    ``grid_costs``; ``message_bytes``: one pipeline message, charged on the grid's links between stages).

    Every rank's finish is its last action's end plus its data-parallel all-reduce, recorded in its
    ``collectives`` as ("dp", start_s, end_s, bytes); the step ends when the last rank is done.
    """
    schedule = validate(schedule)
    owners = stage_owners(schedule)
    P = len(schedule)
    rank_of = rank_of or _picotron(P, T)
    full, sync = grid_costs(costs, blocks, owners, T, D, network, rank_of, activation_bytes, gradient_bytes)
    links = None if network is None else pipeline_network(network, P, rank_of)
    trace = simulate(schedule, dataclasses.replace(full, network=links, message_bytes=message_bytes))
    for rank, seconds in zip(trace.ranks, sync):
        end = max([rank.finish_s] + [e.end_s for e in rank.events])
        if D > 1:
            rank.collectives.append(("dp", end, end + seconds, (gradient_bytes or [0] * P)[rank.rank]))
        rank.finish_s = end + seconds
    return trace


def wire_bytes(trace: Trace, T: int = 1, D: int = 1) -> dict:
    """Bytes a trace's all-reduces put on the wire, by the ring's count (``labs.theory.ring_wire_bytes``): every
    "tp" buffer on a group of T, every "dp" buffer on a group of D. {"inside_stages": ..., "across_replicas": ...}.
    Gloo and NCCL may choose other algorithms; this is what a ring would send."""
    sizes = {"tp": T, "dp": D}
    total = {"tp": 0.0, "dp": 0.0}
    for rank in trace.ranks:
        for kind, _, _, size in rank.collectives:
            total[kind] += ring_wire_bytes(size, sizes[kind])
    return {"inside_stages": round(total["tp"]), "across_replicas": round(total["dp"])}
