"""One time axis for all ranks of a step: each rank's events, messages and all-reduces counted from the moment the
first rank left the step's barrier (``align_to_earliest_rank``, called by ``labs.runtime.step.run_step``).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..timeline.trace import RankTrace
from .devices import under_torchrun

__all__ = ["align_to_earliest_rank"]


def align_to_earliest_rank(trace: RankTrace, clock_zero: float) -> None:
    """Put every rank's times on one axis: zero is the moment the first rank left the step's barrier.

    Ranks leave a barrier up to about a millisecond apart; measured from its own exit, each rank's timeline would be
    shifted by that much. On one machine ``perf_counter`` is a single clock for all processes, so the ranks agree on
    the earliest exit and count from it. Across machines (torchrun on several hosts) clocks differ: keep each rank's own.
    """
    for message in trace.messages:  # stamped with raw perf_counter: count from this rank's zero, like its events
        message.sent_s, message.needed_s, message.received_s = (t - clock_zero for t in message.times_s)
    trace.send_times_s = {key: t - clock_zero for key, t in trace.send_times_s.items()}
    if under_torchrun() and int(os.environ.get("LOCAL_WORLD_SIZE", "0")) != dist.get_world_size():
        return
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    earliest = torch.tensor([clock_zero], dtype=torch.float64, device=device)
    dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
    offset = clock_zero - float(earliest)
    for event in trace.events:
        event.start_s += offset
        event.end_s += offset
    for message in trace.messages:
        message.sent_s, message.needed_s, message.received_s = (t + offset for t in message.times_s)
    trace.send_times_s = {key: t + offset for key, t in trace.send_times_s.items()}
    trace.collectives = [(kind, start + offset, end + offset, size) for kind, start, end, size in trace.collectives]
    trace.finish_s += offset
