"""Notebook 02's verdicts (micro-batching), each registered with the planted inputs that must make it False.

The sweep's idle shares are checked with ``labs.course.timing.timing_holds`` and the gradients with
``labs.course.verdicts.close``; what is here is particular to this notebook: a measured idle share that falls as M
doubles, one formula closer than another, counts and bytes per M, and the unpaced micro-batch efficiency (the cost
of small micro-batches, Narayanan et al. 2021, arXiv:2104.04473, section 3.4). No torch.
"""
from __future__ import annotations

from labs.course.verdicts import case, verdict

__all__ = ["all_equal", "below", "best_in_between", "closer_to", "falls", "same_step", "small_microbatches_cost"]

# Measured, committed in notebook 02 (the unpaced cell): the whole batch of 256, width 512, as M micro-batches (ms).
_MS = [1, 2, 4, 8, 16, 32, 64]
_BATCH_MS = [10.7, 11.7, 16.5, 16.0, 15.8, 23.7, 37.6]
_LINEAR_MS = [10.7] * 7  # a device whose time per sample does not depend on the micro-batch size


@verdict(holds=[case([0.751, 0.603, 0.432, 0.279, 0.163, 0.092])],
         fails=[case([0.751, 0.603, 0.432, 0.279, 0.163, 0.171], why="a run where M=32 idled more than M=16"),
                case([0.751], why="a single point shows no trend")])
def falls(values) -> bool:
    """Each value is smaller than the one before (at least two values)."""
    values = list(values)
    return len(values) >= 2 and all(a > b for a, b in zip(values, values[1:]))


@verdict(holds=[case(0.279, 3 / 11, 0.375)],
         fails=[case(0.36, 3 / 11, 0.375, why="a measurement that sits near the seed's 37.5%")])
def closer_to(measured, right, wrong) -> bool:
    """``measured`` is closer to ``right`` than to ``wrong``."""
    return abs(measured - right) < abs(measured - wrong)


@verdict(holds=[case(0.163, 0.20)], fails=[case(0.603, 0.20, why="M=2's idle share, against the 20% rule")])
def below(value, limit) -> bool:
    """``value`` < ``limit`` (same unit)."""
    return value < limit


@verdict(holds=[case([[49152, 49152, 49152, 65536]] * 3)],
         fails=[case([[16384] * 4, [32768] * 4, [65536] * 4], why="GPipe at a fixed micro-batch size: bytes grow"),
                case([], why="nothing measured")])
def all_equal(rows) -> bool:
    """Every row (a number, or one list per run) is the same, and there is at least one."""
    rows = [list(r) if isinstance(r, (list, tuple)) else r for r in rows]
    return bool(rows) and all(r == rows[0] for r in rows)


@verdict(holds=[case(_MS, _BATCH_MS)],
         fails=[case(_MS, _LINEAR_MS, why="a perfectly efficient device: the batch costs the same in any pieces")])
def small_microbatches_cost(ms, batch_ms, factor: float = 1.5) -> bool:
    """The whole batch computed as the most micro-batches costs more than ``factor`` times the batch in one piece
    (``batch_ms[i]``: the batch's time as ``ms[i]`` micro-batches)."""
    return batch_ms[-1] > factor * batch_ms[0]


@verdict(holds=[case(_MS, [(m + 3) * t / m for m, t in zip(_MS, _BATCH_MS)])],
         fails=[case(_MS, [(m + 3) * t / m for m, t in zip(_MS, _LINEAR_MS)],
                     why="a perfectly efficient device: the most micro-batches are always best")])
def best_in_between(ms, step_ms) -> bool:
    """The shortest predicted step is at neither end of the sweep of M."""
    best = min(range(len(ms)), key=lambda i: step_ms[i])
    return 0 < best < len(ms) - 1


@verdict(holds=[case(330.0, 330.0)],
         fails=[case(360.0, 410.0, why="GPipe and 1F1B with a 5 ms link (P=4, M=8, 10/20 ms)"),
                case(450.0, 405.0, why="GPipe and 1F1B with stage 0 at 1.5x")])
def same_step(step_a_ms, step_b_ms) -> bool:
    """Two simulated steps are equal (to a nanosecond): the simulator is exact, so any difference is real."""
    return abs(step_a_ms - step_b_ms) <= 1e-6
