"""What one message between two real ranks costs, measured over sizes and fitted as latency + size / bandwidth.

    times = message_times([4_096, 65_536, 1_048_576])      # {bytes: fastest one-way seconds}
    latency_s, bytes_per_s, r2 = fit(times)

Two ranks play ping-pong: rank 0 sends a tensor, rank 1 sends it back; half the round trip is one message's time.
Each size is repeated and the fastest exchange kept: noise (another process on the core, a page fault) only ever
adds time, so the minimum is the cleanest estimate of what the message itself costs, also on a loaded laptop. The fit is a least-squares
line of time on size, weighted by relative error: the intercept is the latency, the inverse slope the bandwidth, and
R^2 says how much of the spread the straight line explains.
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist

from ..errors import InputError
from ..runtime.launcher import launch

__all__ = ["fit", "message_times"]


def _ping_pong(rank: int, sizes: list[int], repeats: int) -> dict[int, float]:
    times = {}
    for nbytes in sizes:
        buffer = torch.zeros(max(1, nbytes // 4), dtype=torch.float32)
        samples = []
        for i in range(repeats + 1):  # the first exchange of each size sets up buffers: not counted
            dist.barrier()
            start = time.perf_counter()
            if rank == 0:
                dist.send(buffer, 1)
                dist.recv(buffer, 1)
            else:
                dist.recv(buffer, 0)
                dist.send(buffer, 0)
            if i:
                samples.append((time.perf_counter() - start) / 2)
        times[nbytes] = min(samples)
    return times


def message_times(sizes: list[int], repeats: int = 7, timeout_s: float = 60.0) -> dict[int, float]:
    """{size in bytes: fastest one-way seconds} of a message of each size over ``repeats``, between two real ranks.

    InputError for sizes that are not whole numbers of bytes >= 4."""
    if not sizes or any(not isinstance(s, int) or s < 4 for s in sizes):
        raise InputError(f"sizes are whole numbers of bytes >= 4, got {sizes!r}")
    return launch(_ping_pong, world_size=2, args=(list(sizes), repeats), timeout_s=timeout_s)[0]


def fit(times: dict[int, float]) -> tuple[float, float, float]:
    """(latency seconds, bandwidth bytes per second, R^2) of the line time = latency + size / bandwidth.

    Weighted least squares with weights 1/time^2 (relative errors): sizes span four orders of magnitude, and an
    unweighted fit would let the largest message decide the latency alone.
    """
    xs, ys = list(times), list(times.values())
    ws = [1.0 / y ** 2 for y in ys]
    total_w = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs)) / total_w
    my = sum(w * y for w, y in zip(ws, ys)) / total_w
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
    slope = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys)) / sxx
    intercept = my - slope * mx
    residual = sum(w * (y - intercept - slope * x) ** 2 for w, x, y in zip(ws, xs, ys))
    spread = sum(w * (y - my) ** 2 for w, y in zip(ws, ys))
    return intercept, (1.0 / slope if slope > 0 else float("inf")), 1.0 - residual / spread if spread else 1.0
