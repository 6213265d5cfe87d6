"""Notebook 05 (interleaved 1F1B): checks and graded scores of ``interleaved_schedule`` and
``interleaved_peak_bytes``, and the notebook's printed verdicts.

* ``interleaved_schedule(P, M, v)`` -> one list of actions per rank (``Action`` or strings such as ``"4F3"``: stage 4,
  forward, micro-batch 3), stage s on rank s mod P. The notebook gives the ordering conventions (forwards in groups of
  P through chunk 0, 1, ..., v-1; backwards through the chunks in reverse) and asks for the warm-up; it is judged by
  constraints (Narayanan et al. 2021, arXiv:2104.04473 §2.2.2): valid, every stage on its rank, the simulated step no
  longer than Megatron-LM's order at forward:backward 1:2 and 1:1 (free link), and no rank holding more chunk
  micro-batches than Megatron-LM's order does there. Megatron-LM's warm-up min(2(P-1-r) + (v-1)P, vM) and the leaner
  (v-1)P + P-1-r both pass (with a free link they are equally fast; the extra forwards pay off when messages take
  time). A real run on processes must give the one-process gradients (graded on a shape the notebook never shows).
* ``interleaved_peak_bytes(P, M, v, layers, microbatch_size, width)`` -> per rank, the most activation bytes it holds
  at once under Megatron-LM's order for the toy model (``layers`` Linear+Tanh layers cut into P*v equal chunks, the
  loss on the last chunk). Expected: the grader walks ``labs.interleaved(P, M, v)`` with each chunk's bytes measured
  on the real layers (``labs.models.memory.saved_bytes``), never with a rule.

Graded: the kernel returns plain data; the grader checks it and makes the real runs in its own process. Calling
``labs.interleaved``'s relatives (``labs.make``) for the schedule, or the grader's measurement, is not an answer.
"""
from __future__ import annotations

import functools
import random

import torch

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, score_cases
from labs.exercises.nb03 import real_run_score
from labs.grading import Graded
from labs.models import loss_fn, saved_bytes, toy_stage
from labs.pipeline import run_pipeline
from labs.runtime.launcher import LaunchTimeout, RankFailed
from labs.schedules import ScheduleError, interleaved, parse, validate
from labs.timeline import Costs, simulate

__all__ = ["BYTES_CASES", "BYTES_FORBIDDEN", "GRADED", "RATIOS", "REAL_CASE", "SCHEDULE_REFERENCES", "SHOWN",
           "TOLERANCE", "WRONG_BYTES", "WRONG_ORDERS", "check_interleaved_peak_bytes", "check_interleaved_schedule",
           "closer_than", "expected_peak_bytes", "falls", "measured_chunk_bytes", "ordered", "peak_problem",
           "real_problem", "schedule_problem", "walk_peaks", "warm_plus_one"]

RATIOS = ((1.0, 2.0), (1.0, 1.0))
TOLERANCE = 1e-5
SCHEDULE_REFERENCES = ("labs.schedules.classic.interleaved", "labs.schedules.make")
SHOWN = ((4, 8, 2), (4, 8, 4))  # the shapes the notebook prints: never graded
REAL_CASE = (4, 8, 2)           # the visible check's real run
GRADED_REAL_CASE = (3, 6, 3)    # the graded real run: a shape the notebook never shows
CHECK_CASES = [(2, 4, 3), (4, 4, 4), (3, 6, 2)]


def ordered(P: int, M: int, v: int, warm) -> list[list[str]]:
    """Megatron-LM's order of chunks and micro-batches with ``warm(r)`` warm-up forwards on rank r (capped at vM)."""
    def kth(k, rank, kind):
        chunk = (k // P) % v
        chunk = v - 1 - chunk if kind == "B" else chunk
        return f"{chunk * P + rank}{kind}{(k // (P * v)) * P + k % P}"

    out = []
    for r in range(P):
        total, w = v * M, max(0, min(warm(r), v * M))
        acts = [kth(k, r, "F") for k in range(w)]
        for k in range(total - w):
            acts += [kth(w + k, r, "F"), kth(k, r, "B")]
        out.append(acts + [kth(k, r, "B") for k in range(total - w, total)])
    return out


def _megatron(P, M, v):
    return lambda r: 2 * (P - 1 - r) + (v - 1) * P


WRONG_ORDERS = {"1F1B's warm-up P-1-r": lambda P, M, v: ordered(P, M, v, lambda r: P - 1 - r),
                "the lean warm-up minus one": lambda P, M, v: ordered(P, M, v, lambda r: (v - 1) * P + P - 2 - r),
                "Megatron's warm-up plus one": lambda P, M, v: ordered(P, M, v, lambda r: _megatron(P, M, v)(r) + 1),
                "every forward first": lambda P, M, v: ordered(P, M, v, lambda r: v * M)}


@exercise("interleaved_schedule", wrong=WRONG_ORDERS)
def schedule_problem(case, value) -> str | None:
    """Validator + placement + simulator on ``value`` (what interleaved_schedule(P, M, v) returned)."""
    P, M, v = case
    where = f"interleaved_schedule({P}, {M}, {v})"
    try:
        schedule = validate(parse(value), M=M, num_stages=P * v, P=P)
    except ScheduleError as error:
        return f"{where}: the validator rejects it: {error}"
    for r, actions in enumerate(schedule):
        wrong = [a for a in actions if a.stage % P != r]
        if wrong:
            return (f"{where}: rank {r} runs {wrong[0]}, but stage {wrong[0].stage} lives on rank "
                    f"{wrong[0].stage % P} (stage s on rank s mod P)")
    reference = interleaved(P, M, v)
    for forward_s, backward_s in RATIOS:
        costs = Costs(forward_s=forward_s, backward_s=backward_s)
        step, best = simulate(schedule, costs).step_time_s, simulate(reference, costs).step_time_s
        if step > best + 1e-9:
            return (f"{where}: with forward {forward_s:g} and backward {backward_s:g} per chunk the step takes "
                    f"{step:g}, Megatron-LM's order {best:g}: some rank waits for work it could have had (do the "
                    f"ranks after it get their chunk forwards in time?)")
    peaks, bound = (simulate(s, Costs(forward_s=1.0, backward_s=2.0)).peak_activations for s in (schedule, reference))
    over = [r for r in range(P) if peaks[r] > bound[r]]
    if over:
        return (f"{where}: rank {over[0]} holds {peaks[over[0]]} chunk micro-batches at once; a schedule just as fast "
                f"holds fewer there")
    return None


def real_problem(value, P: int, M: int, v: int) -> str | None:
    """Run the schedule on P processes (a model of P*v layers, one per stage) and compare with one process."""
    where = f"real run of interleaved_schedule({P}, {M}, {v})"
    try:
        run = run_pipeline(parse(value), P=P, M=M, layers=P * v, batch_size=4 * M, pace_ms=(1, 2),
                           warmup_steps=0, steps=1, timeout_s=30)
    except (RankFailed, LaunchTimeout, ScheduleError) as error:
        return f"{where} failed: {str(error).strip().splitlines()[0]}"
    if run.max_grad_error > TOLERANCE:
        return f"{where}: gradients differ from one process by {run.max_grad_error:.1e}"
    return None


def check_interleaved_schedule(fn) -> bool:
    if not check(fn, CHECK_CASES, schedule_problem, "interleaved_schedule", "labs.interleaved",
                 forbidden=SCHEDULE_REFERENCES):
        return False
    problem = real_problem(fn(*REAL_CASE), *REAL_CASE)
    if problem:
        print(problem)
        return False
    print(f"interleaved_schedule: valid, stage s on rank s mod P, as fast as Megatron-LM's order and holding no more "
          f"on any rank, for (P, M, v) in {CHECK_CASES}; a real run at (P, M, v) = {REAL_CASE} on 4 processes "
          f"matches the one-process gradients -> correct")
    return True


def _schedule_cases(rng) -> list[tuple]:
    cases = [(P, k * P, v) for P in (1, 2, 3, 4) for v in (2, 3, 4) for k in (1, 2)]
    for _ in range(4):  # a few drawn at grading time
        P, v = rng.randint(2, 5), rng.randint(2, 4)
        cases.append((P, P * rng.randint(1, 3), v))
    cases.append(GRADED_REAL_CASE)
    return [c for c in dict.fromkeys(cases) if c not in SHOWN and c not in CHECK_CASES]


def _schedule_score(cases, outputs) -> tuple[float, str]:
    """Three quarters for the schedules (validator, placement, simulator), one quarter for the real run."""
    offline, message = score_cases(cases, outputs, schedule_problem)
    return real_run_score(cases, outputs, offline, message, GRADED_REAL_CASE, schedule_problem, real_problem)


# ---------------------------------------------------------------- interleaved_peak_bytes
@functools.lru_cache(maxsize=None)
def measured_chunk_bytes(layers: int, microbatch_size: int, width: int, last: bool) -> int:
    """Bytes one micro-batch's forward saves in a chunk of ``layers`` toy layers whose input is a received tensor
    (with the loss, divided by M as the runtime does, on the last chunk)."""
    stage = toy_stage(layers, width)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(microbatch_size, width, generator=generator).requires_grad_()
    target = torch.randn(microbatch_size, width, generator=generator)

    def forward(inputs):
        out = stage(inputs)
        return loss_fn(out, target) / 4 if last else out

    return saved_bytes(forward, x, exclude=list(stage.parameters()))[1]


def walk_peaks(schedule, chunk_bytes) -> list[int]:
    """Per rank: the most bytes held after any action (a forward adds its chunk's bytes, its backward frees them)."""
    peaks = []
    for actions in parse(schedule):
        held = peak = 0
        for a in actions:
            held += chunk_bytes[a.stage] if a.kind == "F" else -chunk_bytes[a.stage]
            peak = max(peak, held)
        peaks.append(peak)
    return peaks


def expected_peak_bytes(P: int, M: int, v: int, layers: int, microbatch_size: int, width: int) -> list[int]:
    """The grader's answer: Megatron-LM's order walked with every chunk's bytes measured on real layers."""
    k = layers // (P * v)
    chunk = [measured_chunk_bytes(k, microbatch_size, width, s == P * v - 1) for s in range(P * v)]
    return walk_peaks(interleaved(P, M, v), chunk)


def _rule(P, v, layers, b, w, extra=1, target=True, loss_everywhere=False):
    k, unit = layers // (P * v), b * w * 4
    last = set(range(P * (v - 1), P * v)) if loss_everywhere else {P * v - 1}
    return [(k + extra + (1 if target and s in last else 0)) * unit for s in range(P * v)]


def _count_times_mean(P, M, v, layers, b, w):
    chunk, counts = _rule(P, v, layers, b, w), simulate(interleaved(P, M, v)).peak_activations
    return [counts[r] * sum(chunk[r::P]) // v for r in range(P)]


WRONG_BYTES = {
    "peak count x mean chunk bytes": _count_times_mean,
    "warm-up count, no +1": lambda P, M, v, L, b, w: [min(2 * (P - 1 - r) + (v - 1) * P, v * M) * _rule(P, v, L, b, w)[r]
                                                      for r in range(P)],
    "received input counted as shared": lambda P, M, v, L, b, w: walk_peaks(interleaved(P, M, v), _rule(P, v, L, b, w, 0)),
    "loss target forgotten": lambda P, M, v, L, b, w: walk_peaks(interleaved(P, M, v), _rule(P, v, L, b, w, target=False)),
    "a loss on every rank": lambda P, M, v, L, b, w: walk_peaks(interleaved(P, M, v),
                                                                _rule(P, v, L, b, w, loss_everywhere=True)),
    "1F1B's P-r stages": lambda P, M, v, L, b, w: [min(P - r, M) * sum(_rule(P, v, L, b, w)[r::P]) for r in range(P)]}


@exercise("interleaved_peak_bytes", wrong=WRONG_BYTES, key=lambda case: case[:3])
def peak_problem(case, got) -> str | None:
    P, M, v, layers, b, w = case
    where = f"interleaved_peak_bytes({P}, {M}, {v}, {layers}, {b}, {w})"
    if not (isinstance(got, list) and len(got) == P
            and all(isinstance(x, int) and not isinstance(x, bool) for x in got)):
        return f"{where} returned {str(got)[:80]}, expected a list of {P} whole numbers of bytes (one per rank)"
    want = expected_peak_bytes(*case)
    wrong = [r for r in range(P) if got[r] != want[r]]
    if not wrong:
        return None
    r = wrong[-1]  # the last rank holds the loss's chunk: the most instructive
    return f"{where}: rank {r} {got[r]} bytes, the measured walk {want[r]} (ranks wrong: {wrong})"


BYTES_CASES = [(4, 8, 2, 16, 8, 64), (4, 8, 2, 24, 4, 32), (2, 4, 3, 12, 4, 16), (3, 6, 2, 12, 2, 24)]
BYTES_FORBIDDEN = ("labs.models.memory.saved_bytes", "labs.exercises.nb05.expected_peak_bytes",
                   "labs.exercises.nb05.measured_chunk_bytes")


def check_interleaved_peak_bytes(fn) -> bool:
    return check(fn, BYTES_CASES, peak_problem, "interleaved_peak_bytes", "the grader's measured walk",
                 forbidden=BYTES_FORBIDDEN,
                 passed=f"interleaved_peak_bytes: per-rank peaks equal the walk of measured chunk bytes for "
                        f"{len(BYTES_CASES)} shapes -> correct")


def _bytes_cases(rng, count: int = 12, tries: int = 3000) -> list[tuple]:
    """``count`` drawn shapes, each exposing all but at most one of the plausible mistakes."""
    kept = []
    for _ in range(tries):
        P, v = rng.randint(2, 4), rng.randint(2, 3)
        drawn = (P, P * rng.randint(1, 3), v, P * v * rng.randint(1, 3), rng.randint(1, 8), rng.choice([8, 16, 24]))
        if drawn in BYTES_CASES or drawn in kept:
            continue
        want = expected_peak_bytes(*drawn)
        if sum(fn(*drawn) != want for fn in WRONG_BYTES.values()) >= len(WRONG_BYTES) - 1:
            kept.append(drawn)
            if len(kept) == count:
                return kept
    raise RuntimeError(f"only {len(kept)} discriminating shapes in {tries} draws")


GRADED = [Graded(name="interleaved_schedule", points=3, cases=_schedule_cases, score=_schedule_score,
                 forbidden=SCHEDULE_REFERENCES),
          Graded(name="interleaved_peak_bytes", points=2, cases=_bytes_cases, forbidden=BYTES_FORBIDDEN,
                 score=lambda cases, outputs: score_cases(cases, outputs, peak_problem))]


# ---------------------------------------------------------------- the notebook's printed verdicts
@verdict(holds=[case([11, 9, 7, 5], [10, 8, 6, 4])],
         fails=[case([10, 8, 6, 4], [10, 8, 6, 4], why="the warm-up taken for the peak (no +1)"),
                case([4, 3, 2, 1], [10, 8, 6, 4], why="1F1B's counts")])
def warm_plus_one(peaks: list, warmups: list) -> bool:
    """Every rank's peak (chunk micro-batches) is its warm-up forwards + 1."""
    return list(peaks) == [w + 1 for w in warmups]


@verdict(holds=[case([0.278, 0.163, 0.096])],
         fails=[case([0.278, 0.278, 0.278], why="the bubble unchanged by v"), case([0.16, 0.278, 0.096], why="v=2 worse")])
def falls(values: list) -> bool:
    """Each value strictly below the one before."""
    return all(b < a for a, b in zip(values, values[1:]))


@verdict(holds=[case(0.104, 0.106, 0.086)],
         fails=[case(0.104, 0.086, 0.086, why="the free-link theory as the prediction"),
                case(0.104, 0.130, 0.086, why="a prediction farther off than theory")])
def closer_than(measured: float, prediction: float, other: float) -> bool:
    """``prediction`` is strictly closer to ``measured`` than ``other`` is."""
    return abs(measured - prediction) < abs(measured - other)
