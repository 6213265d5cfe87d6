"""What one bare message between two real ranks costs, measured over sizes and fitted as latency + size / bandwidth.

    times = message_times([4, 4_096, 1_048_576], quantile=QUANTILE)   # {bytes: one-way seconds, 20% quantile of 20}
    latency_s, bytes_per_s, r2 = fit(times)
    line_explains(list(times), list(times.values()), latency_s, bytes_per_s)   # a registered verdict

Notebooks 00 and 07 both call these, so they cannot disagree on the same experiment. Two ranks play ping-pong:
rank 0 sends a tensor with a blocking ``dist.send``, rank 1 sends it straight back; half the round trip is one
message. Every round visits all sizes in a new shuffled order (the same on both ranks), so a burst of load on the
machine hits every size alike; round 0 only warms the buffers up. Per size a low quantile of the rounds is kept
(notebook 00: ``QUANTILE``, the 20% quantile, the 5th fastest of 20; by default the fastest, as notebook 07 keeps):
a process paused by the operating system only ever *adds* time, so the fast end of the samples is the link's own
cost, and a quantile rather than the minimum is not one lucky sample.

This is the *bare transport*: one send met by a receive already posted. A pipeline message (the runtime's ``isend``
from a rank that goes on computing, noticed when its receiver next looks) costs more; notebook 00 says which is which.
The fit is the alpha-beta model of a link (Hockney 1994); a ring all-reduce on the same model costs
2(n-1)alpha + 2(n-1)/n S/beta (Thakur, Rabenseifner, Gropp 2005).
"""
from __future__ import annotations

import random
import statistics
import time

import torch
import torch.distributed as dist

from ..errors import InputError
from ..runtime.launcher import launch
from .verdicts import case, verdict

__all__ = ["QUANTILE", "ROUNDS", "constant_misses", "fit", "line_explains", "low_quantile", "message_times",
           "rate_misses", "worst_factor"]

ROUNDS = 20
QUANTILE = 0.2


def low_quantile(samples: list[float], quantile: float = QUANTILE) -> float:
    """The sample at ``quantile`` of the sorted samples (index floor(quantile * n): the 5th fastest of 20)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def _ping_pong(rank: int, sizes: list[int], rounds: int, quantile: float) -> dict[int, float]:
    buffers = {n: torch.zeros(max(1, n // 4), dtype=torch.float32) for n in sizes}
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    for round_ in range(rounds + 1):  # round 0 only warms every size up
        order = list(sizes)
        random.Random(round_).shuffle(order)  # the same order on both ranks, a new one every round
        for n in order:
            dist.barrier()
            start = time.perf_counter()
            if rank == 0:
                dist.send(buffers[n], 1)
                dist.recv(buffers[n], 1)
            else:
                dist.recv(buffers[n], 0)
                dist.send(buffers[n], 0)
            if round_:
                samples[n].append((time.perf_counter() - start) / 2)
    return {n: low_quantile(s, quantile) for n, s in samples.items()}


def message_times(sizes: list[int], repeats: int = ROUNDS, quantile: float = 0.0,
                  timeout_s: float = 60.0) -> dict[int, float]:
    """{size in bytes: one-way seconds} of a message of each size between two real ranks (gloo on a CPU): the
    ``quantile`` of ``repeats`` shuffled rounds (0: the fastest; rank 0's view; sizes are rounded down to whole
    float32 elements).

    InputError for sizes that are not whole numbers of bytes >= 4, repeats < 1 or a quantile outside [0, 1)."""
    if not sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 4 for s in sizes):
        raise InputError(f"sizes are whole numbers of bytes >= 4, got {sizes!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise InputError(f"repeats is how many rounds to time, a whole number >= 1, got {repeats!r}")
    if not isinstance(quantile, (int, float)) or not 0 <= quantile < 1:
        raise InputError(f"quantile is a share of the samples in [0, 1) (0 keeps the fastest), got {quantile!r}")
    return launch(_ping_pong, world_size=2, args=(list(sizes), repeats, quantile), timeout_s=timeout_s)[0]


def fit(times: dict[int, float]) -> tuple[float, float, float]:
    """(latency seconds, bandwidth bytes per second, R^2) of the line time = latency + size / bandwidth.

    Weighted least squares with weights 1/time^2, i.e. it minimises the squared *relative* errors: sizes span four
    orders of magnitude, and an unweighted fit would let the largest message decide the latency alone. Bandwidth is
    inf when the times do not grow with size. Raises InputError with fewer than two sizes."""
    if len(times) < 2:
        raise InputError(f"a line needs at least two sizes, got {len(times)}")
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


def worst_factor(predicted: list[float], measured: list[float]) -> float:
    """How far the worst prediction is off, as a factor >= 1 (1.0 exact, 2.0 double or half; inf for a prediction
    <= 0)."""
    return max(max(p / m, m / p) if p > 0 else float("inf") for p, m in zip(predicted, measured))


# Notebook 00's committed measurement (bytes, one-way seconds), the holds case of the verdicts below.
_SIZES = [4, 1024, 16384, 65536, 262144, 1048576, 4194304, 16777216]
_SECONDS = [110.8e-6, 82.9e-6, 88.4e-6, 115.4e-6, 154.9e-6, 341.3e-6, 1368.0e-6, 5416.9e-6]
_LATENCY_S, _BYTES_PER_S = 89e-6, 3.51e9


@verdict(holds=[case(_SIZES, _SECONDS, _LATENCY_S, _BYTES_PER_S)],
         fails=[case(_SIZES, _SECONDS, statistics.geometric_mean(_SECONDS), float("inf"),
                     why="latency only: the best constant time, no bandwidth term"),
                case(_SIZES, _SECONDS, 0.0, statistics.geometric_mean([b / s for b, s in zip(_SIZES, _SECONDS)]),
                     why="bandwidth only: no latency"),
                case(_SIZES, _SECONDS[::-1], _LATENCY_S, _BYTES_PER_S, why="the times reversed against the sizes")])
def line_explains(sizes_bytes, seconds, latency_s, bytes_per_s, factor: float = 2.0) -> bool:
    """latency_s + size / bytes_per_s predicts every measured time within ``factor`` (both ways)."""
    return worst_factor([latency_s + b / bytes_per_s for b in sizes_bytes], list(seconds)) < factor


@verdict(holds=[case(_SECONDS)],
         fails=[case([100e-6, 98e-6, 101e-6, 104e-6, 99e-6, 103e-6, 100e-6, 102e-6],
                     why="a link where size costs nothing: the same 0.1 ms for every size")])
def constant_misses(seconds, factor: float = 5.0) -> bool:
    """The best constant time (the geometric mean) misses some measured time by more than ``factor``."""
    return worst_factor([statistics.geometric_mean(seconds)] * len(seconds), list(seconds)) > factor


@verdict(holds=[case(_SIZES, _SECONDS)],
         fails=[case(_SIZES, [b / 3e9 for b in _SIZES], why="a link without latency: time proportional to size")])
def rate_misses(sizes_bytes, seconds, factor: float = 10.0) -> bool:
    """The best constant rate (bytes at the geometric-mean bandwidth, no latency) misses some size by more than
    ``factor``."""
    rate = statistics.geometric_mean([b / s for b, s in zip(sizes_bytes, seconds)])
    return worst_factor([b / rate for b in sizes_bytes], list(seconds)) > factor
