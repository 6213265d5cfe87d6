"""The classic schedules as generators: naive, GPipe, 1F1B (PipeDream-Flush) and interleaved 1F1B.

    >>> [[str(a) for a in actions] for actions in gpipe(2, 2)]
    [['0F0', '0F1', '0B0', '0B1'], ['1F0', '1F1', '1B0', '1B1']]

P is the number of pipeline ranks, M of micro-batches, v of model chunks per rank (interleaved only). Each generator
returns one list of ``Action`` per rank and raises ScheduleError, saying what to change, for counts it cannot build.
"""
from __future__ import annotations

from .actions import BACKWARD, FORWARD, Action, Schedule, ScheduleError, check_counts

__all__ = ["gpipe", "interleaved", "naive", "one_f_one_b"]


def naive(P: int) -> Schedule:
    """One batch, no micro-batching: forward 0 -> P-1, then backward P-1 -> 0 (GPipe with M=1)."""
    return gpipe(P, 1)


def gpipe(P: int, M: int) -> Schedule:
    """Fill-drain: every forward, then every backward, in micro-batch order (GPipe, arXiv 1811.06965; as PyTorch's
    ScheduleGPipe)."""
    check_counts(P, M)
    return [[Action(r, FORWARD, m) for m in range(M)] + [Action(r, BACKWARD, m) for m in range(M)] for r in range(P)]


def one_f_one_b(P: int, M: int) -> Schedule:
    """PipeDream-Flush (1F1B, arXiv 2104.04473, section 2.2): P-1-r warm-up forwards on rank r, then one forward one
    backward, then the remaining backwards. Rank r holds at most min(P-r, M) micro-batches."""
    check_counts(P, M)
    schedule = []
    for r in range(P):
        warmup = min(P - 1 - r, M)
        actions = [Action(r, FORWARD, m) for m in range(warmup)]
        for i in range(M - warmup):
            actions += [Action(r, FORWARD, warmup + i), Action(r, BACKWARD, i)]
        actions += [Action(r, BACKWARD, m) for m in range(M - warmup, M)]
        schedule.append(actions)
    return schedule


def interleaved(P: int, M: int, v: int) -> Schedule:
    """Interleaved 1F1B (Megatron-LM, arXiv 2104.04473, section 2.2): v model chunks per rank, stage s on rank s mod P.

    Micro-batches go round in groups of P: a rank runs P micro-batches through chunk 0, the same P through chunk 1,
    and so on; backwards walk the chunks in reverse. Rank r warms up with 2(P-1-r) + (v-1)P forwards.
    Raises ScheduleError unless M is a multiple of P.
    """
    check_counts(P, M, v)
    if M % P:
        raise ScheduleError(f"interleaved 1F1B sends micro-batches round in groups of P={P}: "
                            f"choose M as a multiple of {P} (got M={M})")
    total = M * v

    def action(r: int, k: int, kind: str) -> Action:
        chunk = (k // P) % v
        if kind == BACKWARD:
            chunk = v - 1 - chunk
        microbatch = (k // (P * v)) * P + k % P
        return Action(chunk * P + r, kind, microbatch)

    schedule = []
    for r in range(P):
        warmup = min(2 * (P - 1 - r) + (v - 1) * P, total)
        actions = [action(r, k, FORWARD) for k in range(warmup)]
        for k in range(total - warmup):
            actions += [action(r, warmup + k, FORWARD), action(r, k, BACKWARD)]
        actions += [action(r, k, BACKWARD) for k in range(total - warmup, total)]
        schedule.append(actions)
    return schedule
