"""Every closed form the course checks a measurement against, with its source and the conditions it holds under.

Bubble of the classic schedules (GPipe, arXiv 1811.06965; PipeDream-Flush / 1F1B and interleaved 1F1B, Narayanan et
al., arXiv 2104.04473, section 2.2), for P pipeline ranks, M micro-batches, v model chunks per rank, equal stages and
a free link. Two conventions, both correct, often confused (the seed notes call the first one a fraction):

* ``bubble_overhead(P, M, v) = (P-1) / (v*M)``: bubble time relative to the ideal (compute-only) time, Megatron-LM's
  "bubble time fraction";
* ``idle_fraction(P, M, v) = (P-1) / (v*M + P-1)``: the share of the step that ranks sit idle (what a trace measures).

Zero bubble (Qi, Wan, Huang, Lin, "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv 2401.10241): F, I, W are a
stage's forward, input-gradient and weight-gradient times (the paper writes I as B). ZB-H1's idle time per rank is
the paper's (P-1)(F+I-W) only while W <= F and W <= I; for the course's order in general it is (P-1)max(F+I-W, F, I)
(checked against the simulator at 2,880 points). ZB-H2, ZB-V and DualPipeV (DeepSeek-V3, arXiv 2412.19437) follow.

Collectives (notebook 10): a ring all-reduce of S bytes on n ranks is a reduce-scatter then an all-gather, n-1 steps
of S/n each, so every rank sends (and receives) 2(n-1)/n * S bytes and the whole takes 2(n-1) latencies plus that many
bytes at the link's bandwidth (Thakur, Rabenseifner, Gropp 2005, IJHPCA 19(1); Patarasuk & Yuan 2009, JPDC 69(2);
NCCL's "bus bandwidth", nccl-tests doc/PERFORMANCE.md). ``ring_wire_bytes``, ``tensor_parallel_bytes``,
``data_parallel_bytes`` count a step's all-reduces two ways: the buffers the ranks hand in, and the bytes on the wire.

Traffic between stages, and activation memory: the toy model's bytes per stage (counted, notebook 06), and one
transformer layer's (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", arXiv
2205.05198, Eqs. 1-2 and section 5). No torch here: every function is plain arithmetic.
"""
from __future__ import annotations

import math

from .errors import InputError

__all__ = ["GPT3_175B", "bubble_overhead", "data_parallel_bytes", "dualpipe_v_span_bubble", "idle_fraction",
           "ring_wire_bytes", "slow_link_extra_s", "tensor_parallel_break_even", "tensor_parallel_bytes",
           "toy_stage_bytes", "traffic", "transformer_activation_bytes", "transformer_layer_bytes", "zb_h1_bubble",
           "zb_h1_idle_fraction", "zb_h1_paper_bubble", "zb_h2_span_bubble", "zb_h2_step", "zb_v_step"]


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


def zb_h1_paper_bubble(P: int, F: float, I: float, W: float) -> float:
    """ZB-H1's bubble per rank as the paper gives it: (P-1)(F+I-W) (arXiv 2401.10241 §2.1, I written B there).

    Holds only while W <= F and W <= I (then it equals ``zb_h1_bubble``): at P=4, M=8, F,I,W = 1,1,2 it promises
    a step of 32 where the schedule takes 35. Use ``zb_h1_bubble`` for any costs."""
    return (P - 1) * (F + I - W)


def zb_h1_bubble(P: int, F: float, I: float, W: float) -> float:
    """Idle time of each rank in ZB-H1: (P-1) max(F+I-W, F, I), in the unit of F, I, W (arXiv 2401.10241 §2.1).

    F: a stage's forward, I: its input-gradient step, W: its weight-gradient step; equal stages, a free link, M >= P.
    Equals the paper's (P-1)(F+I-W) when W <= F and W <= I; otherwise the last rank's wait for its first forward,
    (P-1)F, or rank 0's wait for its first gradient, (P-1)I (rank 0 holds no W back to fill it), is longer.
    """
    return (P - 1) * max(F + I - W, F, I)


def zb_h1_idle_fraction(P: int, M: int, F: float = 1.0, I: float = 1.0, W: float = 1.0) -> float:
    """Idle share of a ZB-H1 step: bubble / (M(F+I+W) + bubble), bubble = ``zb_h1_bubble`` (arXiv 2401.10241)."""
    bubble = zb_h1_bubble(P, F, I, W)
    return bubble / (M * (F + I + W) + bubble)


def zb_h2_step(P: int, M: int, F: float, I: float, W: float) -> float:
    """A ZB-H2 step ending in a global synchronisation: M(F+I+W) + (P-1) max(F, F+I-2W, I-F) (arXiv 2401.10241
    §2.2; the course's order, equal stages, free link, M >= 2P-1; checked against the simulator at 7,560 points).

    At F = I = W that is ZB-H1's step: within one synchronised step the last rank still starts (P-1)F late."""
    return M * (F + I + W) + (P - 1) * max(F, F + I - 2 * W, I - F)


def zb_h2_span_bubble(P: int, F: float, I: float, W: float) -> float:
    """The largest idle time inside one rank's own span (first start to last end) in ZB-H2: (P-1) max(0, F+I-2W,
    I-F). The paper's (P-1)(F+I-2W) (arXiv 2401.10241 §2.2, zero at F = I = W) when W <= F; M >= 2P-1."""
    return (P - 1) * max(0.0, F + I - 2 * W, I - F)


def zb_v_step(P: int, M: int, F: float) -> float:
    """ZB-V's step at F = I = W = F per chunk (half a stage): 6MF + (P-1)F, the least any order can take, since the
    last rank cannot start before P-1 chunk forwards (arXiv 2401.10241 §6; the authors' order, P <= 8, M >= P)."""
    return 6 * M * F + (P - 1) * F


def dualpipe_v_span_bubble(P: int, F: float, I: float, W: float, pair: float | None = None) -> float:
    """DualPipeV's bubble (P-1)(F&B + B - 3W), B = I + W, F&B the time of an overlapped forward-and-backward pair
    (default F + B: no overlap), chunk times: deepseek-ai/DualPipe README ("PP/2-1" with PP = 2P chunks; DeepSeek-V3,
    arXiv 2412.19437 §3.2.1). Matches the largest idle inside a rank's span when F = I >= W."""
    B = I + W
    return (P - 1) * ((F + B if pair is None else pair) + B - 3 * W)


def traffic(P: int, M: int, v: int, microbatch_bytes: int) -> tuple[int, int]:
    """(messages, bytes) one training step sends between ranks.

    Every boundary between consecutive stages (v*P - 1 of them, stage s on rank s % P) carries each of the M
    micro-batches twice, its activation forward and its gradient back, unless both stages sit on the same rank
    (P = 1). ``microbatch_bytes``: the bytes of one boundary tensor.
    """
    crossing = v * P - 1 if P > 1 else 0
    messages = 2 * crossing * M
    return messages, messages * microbatch_bytes


def ring_wire_bytes(size_bytes: float, n: int) -> float:
    """Bytes each of n ranks sends in a ring all-reduce of a ``size_bytes`` buffer: 2(n-1)/n * size_bytes.

    A reduce-scatter (n-1 steps of size/n) then an all-gather (n-1 steps of size/n); each rank receives as much.
    ``size_bytes`` at n=2, 1.5x at n=4, 1.75x at n=8, towards 2x; 0 at n=1 (Thakur et al. 2005; nccl-tests' bus
    bandwidth factor). Gloo and NCCL may pick other algorithms (a tree, a direct exchange): this is the ring's count.
    """
    if not isinstance(n, int) or n < 1:
        raise InputError(f"a group has a whole number n >= 1 of ranks, got {n!r}")
    return 2 * (n - 1) / n * size_bytes


def tensor_parallel_bytes(T: int, L: int, batch_size: int, width: int, bytes_per_value: int = 4) -> tuple[int, int]:
    """(buffer bytes, wire bytes) of one step's tensor-parallel all-reduces, summed over all ranks of all stages.

    Megatron's MLP split (arXiv 1909.08053, section 3) all-reduces one (b, h) tensor per block in the forward (g) and
    one in the backward (f), except the model's first block's f: 2L-1 per micro-batch, on each of the T ranks of a
    stage, for L blocks of width h and a batch of ``batch_size`` samples over all micro-batches (and replicas). The
    buffers the ranks hand in add up to T(2L-1)*B*h*bytes; a ring puts 2(T-1)/T of each on the wire from every rank:
    2(T-1)(2L-1)*B*h*bytes (equal at T=2 only; 0 at T=1).
    """
    buffer = (2 * L - 1) * batch_size * width * bytes_per_value
    return (T * buffer if T > 1 else 0), round(T * ring_wire_bytes(buffer, T))


def data_parallel_bytes(P: int, T: int, D: int, parameters_per_rank: int, bytes_per_value: int = 4) -> tuple[int, int]:
    """(buffer bytes, wire bytes) of one step's gradient all-reduce across D replicas, summed over all P*T*D ranks.

    Every rank hands in its whole gradient (``parameters_per_rank`` values): P*T*D*params*bytes of buffers; a ring
    over the D replicas sends 2(D-1)/D of it from each rank: 2(D-1)*P*T*params*bytes on the wire (0 at D=1).
    """
    buffer = parameters_per_rank * bytes_per_value
    return (P * T * D * buffer if D > 1 else 0), round(P * T * D * ring_wire_bytes(buffer, D))


def tensor_parallel_break_even(P: int, P_wide: int, M: int) -> float:
    """The all-reduce cost r* at which P_wide = P/T stages of T ranks each take as long as P stages of one rank (1F1B,
    M micro-batches, equal stages, free pipeline links): r* = 1.5 (P - P_wide) / (M + P_wide - 1).

    r is one all-reduce's time over the per-rank forward compute it follows (F/T for a block of forward F on one
    rank, backward 2F, one all-reduce per block forward and one backward). Steps: (M+P-1)(L/P)3F against
    (M+P_wide-1)(L/P)(3+2r)F; equal at r*. Below r* the wider stages win (a smaller bubble), above it the pipeline
    (fewer all-reduces). 1/3 at P=4, P_wide=2, M=8; 0.09 at M=32.
    """
    return 1.5 * (P - P_wide) / (M + P_wide - 1)


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
