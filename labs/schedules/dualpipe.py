"""DualPipeV: DeepSeek's DualPipe (DeepSeek-V3 report, arXiv 2412.19437 §3.2.1) folded onto P ranks in a V.

Source: deepseek-ai/DualPipe, ``dualpipe/dualpipev.py`` (``DualPipeV.step``, steps 1-8), which PyTorch ships as
``ScheduleDualPipeV`` (``torch/distributed/pipelining/schedules.py``); the V fold is Sea AI Lab's "cut-in-half".
Rank r holds the DOWN leg (stage r) and the UP leg (stage 2P-1-r), as ZB-V. Per rank, in order:

    1. 2(P-1-r) forwards of the DOWN leg            5. P-1-r times: B of UP, then the pair (F UP, B DOWN)
    2. r+1 times: F DOWN, F UP                      6. r+1 times: a backward of UP, one of DOWN; from the middle
    3. P-1-r times: I UP, a kept W, F UP               on they are I's (their W's are kept)
    4. M-2P+r+1 times: the pair (F DOWN, B UP),     7. P-1-r times: a kept W, a backward of DOWN
       then the pair (F UP, B DOWN)                 8. the W's still kept (r+1)

A "pair" is a forward of one micro-batch and a full backward of another that DualPipe runs overlapped: their
kernels interleave so that each one's communication (MoE all-to-all, pipeline sends) hides behind the other's
computation. That is what the pairing buys; it needs two independent micro-batches in flight at once, a custom
``overlapped_forward_backward`` (PyTorch's runtime otherwise runs the two one after the other), and one more chunk
of activations than ZB-V (2P+1 chunks at the peak, against 2P). Most backwards are full B's (weight gradients at
once, less to keep), and only those of steps 3, 6 and 7 are split: one schedule mixes B with I/W.
"""
from __future__ import annotations

from .actions import BACKWARD, FORWARD, INPUT, WEIGHT, Action, ScheduleError, check_counts

__all__ = ["dualpipe_v", "dualpipe_v_pairs"]


def _build(P: int, M: int, r: int) -> tuple[list[Action], set[Action]]:
    down, up = r, 2 * P - 1 - r
    row: list[Action] = []
    pairs: set[Action] = set()
    count = {(s, k): 0 for s in (down, up) for k in (FORWARD, INPUT)}  # B and I share a counter
    kept: list[Action] = []

    def add(stage: int, kind: str) -> Action:
        key = (stage, INPUT if kind == BACKWARD else kind)
        row.append(Action(stage, kind, count[key]))
        count[key] += 1
        if kind == INPUT:
            kept.append(Action(stage, WEIGHT, row[-1].microbatch))
        return row[-1]

    def weight():
        if kept:
            row.append(kept.pop(0))

    def pair(forward_stage: int, backward_stage: int):
        pairs.add(add(forward_stage, FORWARD))
        add(backward_stage, BACKWARD)

    for _ in range(2 * (P - 1 - r)):                      # 1
        add(down, FORWARD)
    for _ in range(r + 1):                                # 2
        add(down, FORWARD)
        add(up, FORWARD)
    for _ in range(P - 1 - r):                            # 3
        add(up, INPUT)
        weight()
        add(up, FORWARD)
    for i in range(M - 2 * P + r + 1):                    # 4
        if i == 0 and r == P - 1:  # the last rank does not pair these two (a smaller bubble, says the source)
            add(down, FORWARD)
            add(up, BACKWARD)
        else:
            pair(down, up)
        pair(up, down)
    for _ in range(P - 1 - r):                            # 5
        add(up, BACKWARD)
        pair(up, down)
    split = False
    for i in range(r + 1):                                # 6
        if i == (r + 1) // 2 and r % 2 == 1:
            split = True
        add(up, INPUT if split else BACKWARD)
        if i == (r + 1) // 2 and r % 2 == 0:
            split = True
        add(down, INPUT if split else BACKWARD)
    for _ in range(P - 1 - r):                            # 7
        weight()
        add(down, INPUT if split else BACKWARD)
    for _ in range(r + 1):                                # 8
        weight()
    return row, pairs


def _checked(P: int, M: int) -> None:
    check_counts(P, M)
    if M < 2 * P:
        raise ScheduleError(f"DualPipeV needs at least 2P = {2 * P} micro-batches (one per stage), got M={M}")


def dualpipe_v(P: int, M: int) -> list[list[Action]]:
    """DualPipeV's per-rank lists (F, I, W, B mixed). Raises ScheduleError for bad P, M or M < 2P."""
    _checked(P, M)
    return [_build(P, M, r)[0] for r in range(P)]


def dualpipe_v_pairs(P: int, M: int) -> frozenset:
    """The forwards that DualPipeV runs overlapped with the backward right after them (``simulate(together=...)``)."""
    _checked(P, M)
    return frozenset(a for r in range(P) for a in _build(P, M, r)[1])
