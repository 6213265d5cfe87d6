"""Notebook 10's measurements beside the runs: two clusters scaled to the toy, the grid's rank orders, sequence
parallelism on real ranks, what a split block costs unpaced, and the notebook's verdicts.

    clusters = scaled_clusters()                 # NVLink and InfiniBand links, scaled so a toy block is 20 ms
    print(clusters.describe())                   # every assumption, with its source
    rank_orders(P=2, T=2, D=2, gpus_per_node=4)  # which traffic crosses nodes in picotron's and Megatron-LM's order
    sequence_parallel_check(T=2)                 # reduce-scatter + all-gather against all-reduce, on T ranks
    split_cost(width=256, batch=64)              # (whole block s, one T=2 shard s), one process, one thread
    without_communication(T=2)                   # a split block with no operator at all, against one process
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ..timeline.costs import Link
from .verdicts import case, verdict

__all__ = ["Clusters", "faster", "idle_is_not_speed", "matches_formula", "rank_orders", "scaled_clusters",
           "sequence_parallel_check", "split_buys_little", "split_cost", "split_halves", "without_communication"]


@dataclass(frozen=True)
class Clusters:
    """A real layer's forward time and all-reduce buffer, and the NVLink and InfiniBand links scaled to the toy."""

    layer_forward_s: float
    buffer_bytes: int
    time: float  # toy seconds per real second
    size: float  # toy bytes per real byte
    nvlink: Link
    infiniband: Link
    real: tuple  # (NVLink, InfiniBand) at their real latency and bandwidth

    def describe(self) -> str:
        nv, ib = self.real
        lines = [f"a 7B-class layer (h=4096, s=2048, b=1, bf16) on an H100 SXM at 40% of 989 TFLOP/s: forward "
                 f"{self.layer_forward_s * 1e3:.2f} ms; a toy block is half a layer (one all-reduce per direction, "
                 f"Megatron's layer has two): {self.layer_forward_s / 2 * 1e3:.2f} ms",
                 f"all-reduce buffer and stage boundary: 2*b*s*h = {self.buffer_bytes / 1e6:.1f} MB"]
        for name, link, toy in (("NVLink 4, 450 GB/s per direction, 5 us", nv, self.nvlink),
                                ("InfiniBand NDR, 50 GB/s per GPU, 5 us", ib, self.infiniband)):
            lines.append(f"{name}: T=2 all-reduce {link.all_reduce_s(self.buffer_bytes, 2) * 1e3:.3f} ms, message "
                         f"{link.time_s(self.buffer_bytes) * 1e3:.3f} ms; scaled to the toy (block 20 ms, 512 B): "
                         f"{toy.all_reduce_s(512, 2) * 1e3:.2f} ms and {toy.time_s(512) * 1e3:.2f} ms")
        return "\n".join(lines)


def scaled_clusters(block_forward_s: float = 0.020, tensor_bytes: int = 512, hidden: int = 4096, seq: int = 2048,
                    tflops: float = 0.4 * 989e12) -> Clusters:
    """The two clusters' links scaled so that one toy block (``block_forward_s``, tensors of ``tensor_bytes``)
    stands for half a transformer layer: time x (toy block / real half layer), size x (toy / real tensor).

    Sources: H100 SXM dense BF16 989 TFLOP/s (NVIDIA datasheet), 38-43% MFU (Llama 3, arXiv:2407.21783, Table 4);
    NVLink 4: 900 GB/s in total per GPU; InfiniBand NDR 400 Gb/s, one adapter per GPU (DGX H100). A layer's forward
    is 24*b*s*h^2 + 4*b*s^2*h FLOPs (Narayanan et al., arXiv:2104.04473, section 5.1, per layer)."""
    layer_forward_s = (24 * seq * hidden ** 2 + 4 * seq ** 2 * hidden) / tflops
    buffer_bytes = 2 * seq * hidden
    scale_time, scale_size = block_forward_s / (layer_forward_s / 2), tensor_bytes / buffer_bytes
    nv, ib = Link(0.005, 450_000), Link(0.005, 50_000)
    return Clusters(layer_forward_s, buffer_bytes, scale_time, scale_size, nv.scaled(scale_time, scale_size),
                    ib.scaled(scale_time, scale_size), (nv, ib))


def rank_orders(P: int = 2, T: int = 2, D: int = 2, gpus_per_node: int = 4) -> list[str]:
    """One line per rank order: for the tensor-parallel groups, the pipeline's neighbours and the data-parallel groups,
    whether they stay inside a node or cross nodes. picotron (and ``labs.parallel.Grid``): rank = (dp*P + pp)*T + tp;
    Megatron-LM's default ``order="tp-cp-ep-dp-pp"``: rank = (pp*D + dp)*T + tp (megatron/core/parallel_state.py)."""
    orders = {"picotron, this course: (dp*P + pp)*T + tp": lambda d, p, t: (d * P + p) * T + t,
              "Megatron-LM, tp-cp-ep-dp-pp: (pp*D + dp)*T + tp": lambda d, p, t: (p * D + d) * T + t}
    lines = []
    for name, rank in orders.items():
        def where(groups):
            crossing = [len({r // gpus_per_node for r in g}) > 1 for g in groups]
            return "all across nodes" if all(crossing) else "some across" if any(crossing) else "inside a node"
        tp = [[rank(d, p, t) for t in range(T)] for d in range(D) for p in range(P)]
        pp = [[rank(d, p, t), rank(d, p + 1, t)] for d in range(D) for p in range(P - 1) for t in range(T)]
        dp = [[rank(d, p, t) for d in range(D)] for p in range(P) for t in range(T)]
        lines.append(f"{name}: tensor-parallel pairs {tp} {where(tp)}; pipeline neighbours {pp} {where(pp)}; "
                     f"data-parallel groups {dp} {where(dp)}")
    return lines


def _bare_rank(rank: int, T: int, width: int, batch: int):
    import torch
    from ..parallel.tensor import MLPModel, tensor_parallel_block
    block = MLPModel(num_layers=1, width=width, seed=3).layers()[0]
    shard = tensor_parallel_block(block, rank, T, None, f=lambda x, group: x, g=lambda x, group: x)
    x, target = MLPModel(width=width).batch(batch, seed=5)
    x.requires_grad_()
    out = shard(x)
    (out * target).sum().backward()  # a loss linear in the output: the gradient reaching it does not depend on it
    return out.detach(), x.grad, {n: p.grad for n, p in shard.named_parameters()}


def without_communication(T: int = 2, width: int = 8, batch: int = 4) -> dict:
    """A tensor-parallel MLP block whose two operators do nothing, on T real ranks, against the block in one process:
    {quantity: (max difference on any rank, max difference of the sum over the ranks)} for the output (its bias
    counted once in the sum), the input gradient and the gathered weight gradients (no sum: each rank holds its own
    shard). Loss: sum(output * target)."""
    import torch
    from ..parallel.tensor import MLPModel, gather_shards
    from ..runtime.launcher import launch
    results = launch(_bare_rank, world_size=T, args=(T, width, batch), timeout_s=60)
    block = MLPModel(num_layers=1, width=width, seed=3).layers()[0]
    x, target = MLPModel(width=width).batch(batch, seed=5)
    x.requires_grad_()
    out = block(x)
    (out * target).sum().backward()
    bias = block.down.bias.detach()
    gathered = gather_shards([grads for _, _, grads in results])
    worst = lambda pairs: max(float((a - b).abs().max()) for a, b in pairs)  # noqa: E731
    return {"output": (worst((o, out.detach()) for o, _, _ in results),
                       worst([(sum(o for o, _, _ in results) - (T - 1) * bias, out.detach())])),
            "input gradient": (worst((g, x.grad) for _, g, _ in results),
                               worst([(sum(g for _, g, _ in results), x.grad)])),
            "weight gradients": (worst((gathered[n], p.grad) for n, p in block.named_parameters()), None)}


def _sp_rank(rank: int, T: int, rows: int, width: int):
    import torch
    import torch.distributed as dist
    x = torch.arange(rows * width, dtype=torch.float32).reshape(rows, width) + 10.0 * rank  # (s, h) partial sums
    summed = x.clone()
    dist.all_reduce(summed)
    mine = torch.empty(rows // T, width)
    dist.reduce_scatter_tensor(mine, x.clone())  # this rank's s/T rows of the sum
    gathered = torch.empty(rows, width)
    dist.all_gather_into_tensor(gathered, mine)  # every rank's rows, back together
    return summed, mine, gathered


def sequence_parallel_check(T: int = 2, rows: int = 8, width: int = 4) -> dict:
    """Reduce-scatter then all-gather of an (s, h) tensor on T real ranks against its all-reduce: the largest
    difference, whether each rank kept its own s/T rows of the sum, and the ring's wire bytes of both ways."""
    from ..runtime.launcher import launch
    from ..theory import ring_wire_bytes
    results = launch(_sp_rank, world_size=T, args=(T, rows, width), timeout_s=60)
    summed = results[0][0]
    size = rows * width * 4
    return {"max_difference": max(float((g - s).abs().max()) for s, _, g in results),
            "own_rows": max(float((mine - summed.chunk(T)[r]).abs().max()) for r, (_, mine, _) in enumerate(results)),
            "all_reduce_wire_bytes": ring_wire_bytes(size, T),
            "reduce_scatter_plus_all_gather_wire_bytes": 2 * (T - 1) / T * size}


def split_cost(width: int, batch: int, T: int = 2, repeats: int = 15) -> tuple[float, float]:
    """(seconds, seconds): the median forward + backward of one MLP block of ``width``, whole, and of one of its T
    tensor-parallel shards (no communication: the shard's own maths), in one process on one thread."""
    import torch
    from ..parallel.tensor import MLPModel, tensor_parallel_block
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        block = MLPModel(num_layers=1, width=width).layers()[0]
        shard = tensor_parallel_block(block, 0, T, None, f=lambda x, g: x, g=lambda x, g: x)
        x = torch.randn(batch, width)
        medians = []
        for module in (block, shard):
            times = []
            for _ in range(repeats + 2):
                start = time.perf_counter()
                module(x.clone().requires_grad_()).sum().backward()
                times.append(time.perf_counter() - start)
            medians.append(statistics.median(times[2:]))
        return medians[0], medians[1]
    finally:
        torch.set_num_threads(threads)


@verdict(holds=[case(1.143, 1.332, 0.05), case(1.417, 1.544, 0.03)],
         fails=[case(1.320, 1.080, 0.03, why="free collectives over InfiniBand: PP=4 1320 vs PP2xTP2 1080 ms"),
                case(1.332, 1.332, 0.0, why="a tie")])
def faster(step_s, other_s, margin) -> bool:
    """``step_s`` shorter than ``other_s`` by more than ``margin`` (a fraction of ``other_s``)."""
    return step_s < (1 - margin) * other_s


@verdict(holds=[case(0.142, 0.320, 1.561, 1.428)],
         fails=[case(0.120, 0.280, 1.160, 1.347, why="NVLink: PP2xTP2 idles less and is faster too")])
def idle_is_not_speed(idle_a, idle_b, step_a_s, step_b_s) -> bool:
    """Run a idles less than run b and still takes longer: communication inside an action counts as busy."""
    return idle_a < idle_b and step_a_s > step_b_s


@verdict(holds=[case(368_640, 368_640), case(122_880, 122_880)],
         fails=[case(368_640, 245_760, why="the buffer formula T(2L-1)Bh4 taken for the wire bytes at T=4"),
                case(408_576, 272_384, why="the buffer formula at D=4")])
def matches_formula(measured, formula) -> bool:
    """A count (bytes, all-reduces, parameters) equal to its formula, exactly."""
    return measured == formula


@verdict(holds=[case(153e-6, 160e-6)], fails=[case(80e-6, 160e-6, why="a shard that takes exactly half")])
def split_buys_little(shard_s, whole_s) -> bool:
    """A shard takes more than 0.75 of the whole block: splitting it buys little (fixed costs per call dominate)."""
    return shard_s > 0.75 * whole_s


@verdict(holds=[case(1.48e-3, 3.0e-3)], fails=[case(3.0e-3, 3.0e-3, why="a shard as slow as the whole block")])
def split_halves(shard_s, whole_s) -> bool:
    """A shard takes less than 0.65 of the whole block: the split buys most of its 1/T."""
    return shard_s < 0.65 * whole_s
