"""Notebook 11's memory section: the bytes the toy model predicts each rank holds for its backwards, and the verdicts
that compare them with the runtime's memory ledger (``labs.runtime.ledger``, ``run.trace.memory``).

The toy's stage (``labs.models.ToyModel``: ``Linear -> Tanh`` layers, MSE loss) of ``k`` layers, one micro-batch of
``rows`` x ``width`` float32 values, T = 4 * rows * width bytes per boundary tensor:

* **M_B**, what autograd holds from a micro-batch's F until its I: each Linear's input and the last Tanh's output
  (a Tanh's output is the next Linear's input, one storage), k + 1 tensors; on the last stage also the loss's
  target: (k + 2) T.
* **What a deferred W keeps alive** from I until W: the same k + 1 saved tensors (the runtime's W walks the layer's
  nodes again from its output, so Tanh needs its output and the Linear its input; nothing of them is freed at I), the
  target excepted (the loss's node goes at I), plus the gradient at each layer's output, k T, which the runtime
  holds itself. The ledger files autograd's saved tensors under ``activations`` and those kept gradients under
  ``other``, so its activations show ``M_W``'s saved part, (k + 1) T.

Qi et al., *Zero Bubble Pipeline Parallelism* (arXiv 2401.10241, §2.3 and Table 2): worker i = r + 1 holds
(p - i + 1) M_B + (i - 1) M_W under ZB-H1 and (2p - 2i + 1) M_B + (2i - 2) M_W under ZB-H2; with M_W <= M_B (their
Table 1: M_W = 32sbh < M_B = sb(34h + 5as) per transformer layer) the peaks are p M_B, 1F1B's, and (2p - 1) M_B.
No torch here: the functions take byte counts and action lists.
"""
from __future__ import annotations

from labs.course.verdicts import case, verdict

__all__ = ["activation_peaks", "bytes_match", "one_f_one_b_bytes", "ratio_matches", "toy_stage_bytes",
           "zb_h1_bytes", "zb_h2_bytes"]


def toy_stage_bytes(rows: int, width: int, layers: int = 1, last: bool = False) -> tuple[int, int, int]:
    """(M_B, M_W's saved part, kept gradients) in bytes for one micro-batch of ``rows`` x ``width`` float32 values on
    a toy stage of ``layers`` layers (``last``: the stage that computes the loss). Raises ValueError for a
    non-positive size."""
    if min(rows, width, layers) < 1:
        raise ValueError(f"rows, width and layers are positive whole numbers, got {rows}, {width}, {layers}")
    T = 4 * rows * width
    return (layers + 1 + bool(last)) * T, (layers + 1) * T, layers * T


def activation_peaks(schedule, stage_bytes) -> list[int]:
    """Per rank, the most bytes autograd holds at once when the rank runs its list in order (``schedule``: per-rank
    lists of actions with ``stage``, ``kind`` and ``microbatch``): F adds ``stage_bytes(stage)[0]`` (M_B), I lowers
    it to ``stage_bytes(stage)[1]`` (M_W's saved part), W and B free it. Raises KeyError for an I, W or B
    without its F before it on the rank."""
    peaks = []
    for actions in schedule:
        held, now, peak = {}, 0, 0
        for a in actions:
            key = (a.stage, a.microbatch)
            if a.kind == "F":
                held[key] = stage_bytes(a.stage)[0]
            elif a.kind == "I":
                now -= held[key]
                held[key] = stage_bytes(a.stage)[1]
            else:  # W or B: the micro-batch's activations go
                now -= held.pop(key)
                continue
            now += held[key]
            peak = max(peak, now)
        peaks.append(peak)
    return peaks


def one_f_one_b_bytes(M_B: list) -> list[int]:
    """1F1B (arXiv 2104.04473 §2.2.1), M >= P: rank r holds P - r micro-batches, (P - r) M_B[r] bytes."""
    P = len(M_B)
    return [(P - r) * M_B[r] for r in range(P)]


def zb_h1_bytes(M_B: list, M_W: list) -> list[int]:
    """ZB-H1, M >= P: (P - r) M_B[r] + r M_W[r] on rank r (Qi et al. §2.3, worker i = r + 1)."""
    P = len(M_B)
    return [(P - r) * M_B[r] + r * M_W[r] for r in range(P)]


def zb_h2_bytes(M_B: list, M_W: list) -> list[int]:
    """ZB-H2, M >= 2P - 1: (2P - 2r - 1) M_B[r] + 2r M_W[r] on rank r (Qi et al. §2.3, worker i = r + 1)."""
    P = len(M_B)
    return [(2 * P - 2 * r - 1) * M_B[r] + 2 * r * M_W[r] for r in range(P)]


# ---------------------------------------------------------------- verdicts the notebook prints (with negative controls)
_ZB_H1 = [16384, 16384, 16384, 18432]  # the toy, P=4, M=8, one layer per stage, 8 rows of 64: measured by the ledger


@verdict(holds=[case(_ZB_H1, [16384, 16384, 16384, 18432]), case([4096, 4096, 2048, 0], [4096, 4096, 2048, 0])],
         fails=[case(_ZB_H1, [16384, 12288, 8192, 6144], why="1F1B's P - r micro-batches"),
                case(_ZB_H1, [16384] * 4, why="the paper's p M_B on every rank: the last stage's target forgotten"),
                case(_ZB_H1, [16384, 18432, 20480, 24576], why="the kept gradients counted as autograd's"),
                case(_ZB_H1, _ZB_H1[:3], why="a rank missing")])
def bytes_match(measured: list, predicted: list) -> bool:
    """Per rank (or per moment), the measured bytes equal the predicted ones exactly (integers, same length)."""
    return len(measured) == len(predicted) and all(int(m) == int(p) for m, p in zip(measured, predicted))


@verdict(holds=[case(18432, 16384, 9 / 8), case(28672, 16384, 7 / 4)],
         fails=[case(18432, 16384, 1.0, why="the paper's ZB-H1 = 1F1B taken for the toy's worst rank"),
                case(30720, 16384, 2.0, why="the authors' README's rounded 2x for ZB-H2"),
                case(18432, 0, 9 / 8, why="nothing measured")])
def ratio_matches(numerator: int, denominator: int, expected: float) -> bool:
    """``numerator / denominator`` (two byte counts) equals ``expected`` to 1e-9; False when the denominator is 0."""
    return denominator > 0 and abs(numerator / denominator - expected) <= 1e-9
