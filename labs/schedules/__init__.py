"""Schedules as data (no torch): the actions, the generators, the data flow between stages, and the checks.

    make("1f1b", P=4, M=8)             # any schedule by name: one list of actions per pipeline rank
    validate(schedule)                 # before any process starts: what to fix, or the parsed lists

* ``actions``: ``Action`` (``2F5``; kinds F, I, W, B as PyTorch's), ``parse``, ``shape``, ``stage_owners``;
* ``classic``: ``naive``, ``gpipe``, ``one_f_one_b``, ``interleaved``; ``zero_bubble``: ``zb_h1``, ``zb_h2``,
  ``zb_v`` (the authors' order, ``v_schedule``), ``zb_v_greedy``; ``dualpipe``: ``dualpipe_v`` (DeepSeek-V3);
* ``lowering``: which stage receives each action's output; ``lower`` adds the explicit sends and receives;
* ``validation``: ``validate`` (with the deadlock finder), ``check_runnable``; ``in_order``: ``check_in_order`` and
  the checks of lowered lists (first in, first out; one order per pair; receive buffers).
"""
from __future__ import annotations

from .actions import (BACKWARD, FORWARD, GRADIENT_KINDS, INPUT, KINDS, NOTATIONS, WEIGHT, Action, Schedule,
                      ScheduleError, check_counts, is_old_notation, parse, parse_action, shape, stage_owners, to_text,
                      uses_split_backward)
from .classic import gpipe, interleaved, naive, one_f_one_b
from .in_order import check_blocking_in_order, check_lowered, check_pair_order, receive_buffers_peak
from .flow import finishes, send_window
from .lowering import (RECV, SEND, Comm, backward_kinds, consumer, dependencies, input_source, lower, message_order,
                       output_target,
                       producer)
from .validation import RUNNABLE_KINDS, check_in_order, check_runnable, validate
from .dualpipe import dualpipe_v, dualpipe_v_pairs
from .zero_bubble import ZERO_BUBBLE, v_owner, zb_h1, zb_h2, zb_v, zb_v_greedy

__all__ = ["BACKWARD", "FORWARD", "GRADIENT_KINDS", "INPUT", "KINDS", "NOTATIONS", "RECV", "RUNNABLE_KINDS",
           "SCHEDULES", "SEND", "WEIGHT", "Action", "Comm", "Schedule", "ScheduleError", "backward_kinds",
           "check_blocking_in_order", "check_counts", "check_in_order", "check_lowered", "check_pair_order",
           "check_runnable", "consumer", "dependencies", "dualpipe_v", "dualpipe_v_pairs", "finishes", "gpipe",
           "input_source",
           "interleaved", "is_old_notation", "lower", "make", "message_order", "naive", "one_f_one_b",
           "output_target", "parse", "parse_action", "producer", "receive_buffers_peak", "send_window", "shape",
           "stage_owners",
           "to_text", "uses_split_backward", "v_owner", "validate", "zb_h1", "zb_h2", "zb_v", "zb_v_greedy"]

SCHEDULES = ("naive", "gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v", "dualpipe-v")
_FIXED_V = {**ZERO_BUBBLE, "dualpipe-v": 2}  # name -> the model chunks per rank it always holds


def make(name: str, P: int, M: int, v: int = 1) -> Schedule:
    """Build a schedule by name: ``naive``, ``gpipe``, ``1f1b``, ``interleaved`` (v >= 2), ``zb-h1``, ``zb-h2``,
    ``zb-v`` (v=2, the authors' order) or ``dualpipe-v`` (v=2, M >= 2P).

    P pipeline ranks, M micro-batches, v model chunks per rank. Raises ScheduleError, saying what to change, for an
    unknown name or counts the schedule cannot take.
    """
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    check_counts(P, M, v)
    if name in _FIXED_V:
        expected = _FIXED_V[name]
        if v not in (1, expected):
            raise ScheduleError(f"{name} holds {expected} chunk(s) per rank: use v={expected}, got v={v}")
        build = {"zb-h1": zb_h1, "zb-h2": zb_h2, "zb-v": zb_v, "dualpipe-v": dualpipe_v}[name]
        return build(P, M)
    if name != "interleaved" and v != 1:
        raise ScheduleError(f"{name} puts one stage on each rank: virtual stages v={v} needs "
                            f"--schedule interleaved (or set v=1)")
    if name == "naive":
        if M != 1:
            raise ScheduleError(f"the naive schedule runs one batch (M=1), got M={M}: use gpipe or 1f1b for "
                                f"micro-batches")
        return naive(P)
    if name == "gpipe":
        return gpipe(P, M)
    if name == "1f1b":
        return one_f_one_b(P, M)
    if v < 2:
        raise ScheduleError(f"interleaved needs v >= 2 model chunks per rank, got v={v}: set v to 2 or more "
                            f"(-v/--virtual-stages), or use 1f1b for one stage per rank")
    return interleaved(P, M, v)
