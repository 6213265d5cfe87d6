"""Every closed form the course checks a measurement against, with its source and the conditions it holds under.

Bubble of the classic schedules (GPipe, arXiv 1811.06965; PipeDream-Flush / 1F1B and interleaved 1F1B, Narayanan et
al., arXiv 2104.04473, section 2.2), for P pipeline ranks, M micro-batches, v model chunks per rank, equal stages and
a free link. Two conventions, both correct, often confused (the seed notes call the first one a fraction):

* ``bubble_overhead(P, M, v) = (P-1) / (v*M)``: bubble time relative to the ideal (compute-only) time, Megatron-LM's
  "bubble time fraction";
* ``idle_fraction(P, M, v) = (P-1) / (v*M + P-1)``: the share of the step that ranks sit idle (what a trace measures).

Zero bubble (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv 2401.10241, section 3): ZB-H1's idle
time per rank is (P-1)(F+B-W), with B the input-gradient and W the weight-gradient time, assuming W <= B.

Traffic between stages, and activation memory: the toy model's bytes per stage (counted, notebook 06), and one
transformer layer's (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", arXiv
2205.05198, Eqs. 1-2 and section 5). No torch here: every function is plain arithmetic.
"""
from __future__ import annotations

import math

from .errors import InputError

__all__ = ["GPT3_175B", "bubble_overhead", "idle_fraction", "slow_link_extra_s", "toy_stage_bytes", "traffic",
           "transformer_activation_bytes", "transformer_layer_bytes", "zb_h1_bubble", "zb_h1_idle_fraction"]


def bubble_overhead(P: int, M: int, v: int = 1) -> float:
    """Bubble time over ideal compute time: (P-1)/(v*M) (arXiv 2104.04473, section 2.2). 3.0 (300%) for P=4, M=1.

    Equal stages, free link; P pipeline ranks, M micro-batches, v model chunks per rank.
    """
    return (P - 1) / (v * M)


def idle_fraction(P: int, M: int, v: int = 1) -> float:
    """Idle share of the step: (P-1)/(v*M+P-1). 0.75 for P=4, M=1; 0.27 for M=8; 0.16 for M=16.

    GPipe (arXiv 1811.06965), 1F1B and interleaved 1F1B (arXiv 2104.04473), equal stages and a free link.
    """
    return (P - 1) / (v * M + P - 1)


def zb_h1_bubble(P: int, F: float, B: float, W: float) -> float:
    """Idle time of each rank in ZB-H1: (P-1)(F+B-W), in the unit of F, B, W (arXiv 2401.10241, section 3).

    F: a stage's forward, B: its input-gradient step, W: its weight-gradient step; assumes W <= B.
    """
    return (P - 1) * (F + B - W)


def zb_h1_idle_fraction(P: int, M: int, F: float = 1.0, B: float = 1.0, W: float = 1.0) -> float:
    """Idle share of a ZB-H1 step: (P-1)(F+B-W) / (M(F+B+W) + (P-1)(F+B-W)) (arXiv 2401.10241). Assumes W <= B."""
    bubble = zb_h1_bubble(P, F, B, W)
    return bubble / (M * (F + B + W) + bubble)


def traffic(P: int, M: int, v: int, microbatch_bytes: int) -> tuple[int, int]:
    """(messages, bytes) one training step sends between ranks.

    Every boundary between consecutive stages (v*P - 1 of them, stage s on rank s % P) carries each of the M
    micro-batches twice, its activation forward and its gradient back, unless both stages sit on the same rank
    (P = 1). ``microbatch_bytes``: the bytes of one boundary tensor.
    """
    crossing = v * P - 1 if P > 1 else 0
    messages = 2 * crossing * M
    return messages, messages * microbatch_bytes


def toy_stage_bytes(layers: int, microbatch_size: int, width: int, last_stage: bool = False,
                    bytes_per_value: int = 4) -> int:
    """Bytes one stage of ``layers`` toy layers (Linear + Tanh) saves for one micro-batch (notebook 06's reference).

    Linear saves its input, Tanh its output, and the next Linear's input is that same output: k + 1 distinct
    tensors of micro-batch x width values. The last stage also keeps the loss's target (one more such tensor).
    """
    tensors = layers + 1 + (1 if last_stage else 0)
    return tensors * microbatch_size * width * bytes_per_value


GPT3_175B = dict(layers=96, hidden=12288, heads=96, sequence=2048)


def transformer_layer_bytes(sequence: int, microbatch_size: int, hidden: int, heads: int,
                            recompute: str = "none", T: int = 1, bytes_per_value: int = 2) -> float:
    """Activation bytes of one transformer layer for one micro-batch (arXiv 2205.05198, Eqs. 1-2 and section 5;
    16-bit values, dropout masks at 1 byte per value).

    * ``"none"``: 34·s·b·h + 5·a·s²·b (the 5·a·s²·b is the attention scores, softmax and its dropout);
    * ``"selective"``: 34·s·b·h (attention scores recomputed in the backward);
    * ``"full"``: 2·s·b·h (only the layer's input is kept; the whole layer is recomputed).

    ``T`` > 1 tensor-parallel ranks assume tensor *and* sequence parallelism, which divide every term by T.
    ``bytes_per_value`` scales the 16-bit count (4: float32 activations, about twice the bytes).
    Raises InputError for another ``recompute``.
    """
    s, b, h, a = sequence, microbatch_size, hidden, heads
    if recompute == "none":
        value = 34 * s * b * h + 5 * a * s * s * b
    elif recompute == "selective":
        value = 34 * s * b * h
    elif recompute == "full":
        value = 2 * s * b * h
    else:
        raise InputError(f"recompute is 'none', 'selective' or 'full', got {recompute!r}")
    return value / T * bytes_per_value / 2


def transformer_activation_bytes(P: int = 8, M: int = 32, schedule: str = "gpipe", microbatch_size: int = 1,
                                 recompute: str = "none", layers: int = 96, hidden: int = 12288, heads: int = 96,
                                 sequence: int = 2048, T: int = 1, bytes_per_value: int = 2) -> float:
    """Peak activation bytes on the first stage (the one that holds the most) of a pipelined transformer.

    Defaults: GPT-3 175B (96 layers, hidden 12288, 96 heads, sequence 2048) on P=8 pipeline ranks, micro-batch size 1.
    Assumes layers split evenly (layers/P per stage), GPipe holding all M micro-batches and 1F1B holding min(P, M) on
    stage 0; weights, gradients, optimizer state and the embedding/output layers not counted (arXiv 2205.05198).
    Raises InputError for a schedule other than 'gpipe' or '1f1b'.
    """
    if schedule not in ("gpipe", "1f1b"):
        raise InputError(f"schedule is 'gpipe' or '1f1b', got {schedule!r}")
    per_microbatch = (layers / P) * transformer_layer_bytes(sequence, microbatch_size, hidden, heads, recompute, T,
                                                             bytes_per_value)
    held = M if schedule == "gpipe" else min(P, M)
    return held * per_microbatch


def slow_link_extra_s(schedule: str, P: int, M: int, k: int, latency_s: float) -> float:
    """Seconds one slow link adds to a step: the link between ranks k and k+1 delays every message, both ways, by
    ``latency_s``; every other link is free (notebook 07 derives it; checked against the simulator).

    * GPipe (arXiv 1811.06965): 2L, once per step, whatever k and M: while one micro-batch is on the wire the next
      one's forward runs, so only the first forward and the last backward wait.
    * 1F1B (PipeDream-Flush, arXiv 2104.04473): 2L * max(1, ceil((M - P + k + 2) / 2)), about L per micro-batch: in
      the steady state a round trip across the link (rank k's forward out, rank k+1's backward back) sits in a
      loop that holds two micro-batches.

    Holds for one stage per rank, equal stages (the same F and B on every stage), a latency without a bandwidth
    queue (each message's transfer shorter than a forward). ``schedule``: "gpipe" or "1f1b"; P ranks, M
    micro-batches, 0 <= k < P-1. Raises InputError otherwise.
    """
    if schedule not in ("gpipe", "1f1b"):
        raise InputError(f"slow_link_extra_s knows 'gpipe' and '1f1b', got {schedule!r}")
    if not (isinstance(k, int) and 0 <= k < P - 1):
        raise InputError(f"the slow link joins ranks k and k+1 with 0 <= k < P-1 = {P - 1}, got k={k!r}")
    if schedule == "gpipe":
        return 2 * latency_s
    return 2 * latency_s * max(1, math.ceil((M - P + k + 2) / 2))
