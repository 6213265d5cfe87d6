"""Notebook 04 (1F1B): checks and graded score of ``one_f_one_b_schedule``, and the notebook's printed verdicts.

``one_f_one_b_schedule(P, M)`` returns one list of actions per rank (``labs.Action`` or strings such as ``"2F5"``),
rank r holding stage r, F and B actions only. It is judged by two constraints, never against a given order
(PipeDream-Flush, Narayanan et al. 2021, arXiv:2104.04473 §2.2.1): **as fast as GPipe** (the simulated step is no
longer than GPipe's at forward:backward costs 1:2, 1:1 and 2:1) and **as little memory as that allows** (no rank holds
more micro-batches at once than the least any schedule that fast needs there). The learner finds the warm-up count;
the messages name the rank that waits or holds too much, never the count. A real run on processes must then give the
one-process gradients with the same peaks. Graded: the kernel returns the schedules as strings; the grader checks them
and makes the real runs (on shapes the notebook never shows) in its own process. Calling ``labs.one_f_one_b`` (or
``labs.make``, or ZB-H1, whose lists without their W's are 1F1B) is not an answer.
"""
from __future__ import annotations

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, one_stage_per_rank, real_run, score_cases
from labs.exercises.nb03 import real_run_score
from labs.grading import Graded
from labs.schedules import gpipe
from labs.timeline import Costs, simulate

__all__ = ["CHECK_CASES", "GRADED", "RATIOS", "REAL_CASES", "REFERENCES", "SHOWN", "TOLERANCE", "WRONG",
           "check_one_f_one_b_schedule", "fewest_held", "flat_within", "grows_by", "kept_are", "kept_per_forward", "per_rank_equal", "offline_problem",
           "real_problem", "same_step", "score", "within_buffers"]

RATIOS = ((1.0, 2.0), (1.0, 1.0), (2.0, 1.0))  # forward, backward costs the schedule must be as fast as GPipe at
TOLERANCE = 1e-5
REFERENCES = ("labs.schedules.classic.one_f_one_b", "labs.schedules.make", "labs.schedules.zero_bubble.zb_h1")
SHOWN = ((4, 8),)  # the shape the notebook draws: never graded
CHECK_CASES = [(4, 2), (3, 5), (5, 7)]
REAL_CASES = ((3, 6), (4, 3))


def fewest_held(P: int, M: int) -> list[int]:
    """The grader's bound: the fewest micro-batches rank r can hold at its peak in a schedule as fast as GPipe
    (min(P - r, M)). Never printed to the learner."""
    return [min(P - r, M) for r in range(P)]


def _shaped(P: int, M: int, warm) -> list[list[str]]:
    """Lists with ``warm(r)`` warm-up forwards on rank r (capped at M), then forward/backward pairs, then backwards."""
    out = []
    for r in range(P):
        w = max(0, min(warm(r), M))
        acts = [f"{r}F{m}" for m in range(w)]
        for i in range(M - w):
            acts += [f"{r}F{w + i}", f"{r}B{i}"]
        out.append(acts + [f"{r}B{m}" for m in range(M - w, M)])
    return out


def _uncapped(P: int, M: int) -> list[list[str]]:
    """An edge-case slip: P-1-r warm-up forwards even when M is smaller (forwards of micro-batches that do not exist)."""
    return [[f"{r}F{m}" for m in range(P - 1 - r)] + acts[min(P - 1 - r, M):]
            for r, acts in enumerate(_shaped(P, M, lambda r: P - 1 - r))]


WRONG = {"GPipe": lambda P, M: [[str(a) for a in acts] for acts in gpipe(P, M)],
         "warm-up P-r (one too many)": lambda P, M: _shaped(P, M, lambda r: P - r),
         "warm-up P-2-r (one too few)": lambda P, M: _shaped(P, M, lambda r: P - 2 - r),
         "warm-up P-1 on every rank": lambda P, M: _shaped(P, M, lambda r: P - 1),
         "warm-up not capped at M": _uncapped}


@exercise("one_f_one_b_schedule", trivial=lambda case: [WRONG["GPipe"](*case)], wrong=WRONG)
def offline_problem(case, value) -> str | None:
    """Validator + simulator on ``value`` (what one_f_one_b_schedule(P, M) returned): None if fine, else why."""
    P, M = case
    where = f"one_f_one_b_schedule({P}, {M})"
    schedule, problem = one_stage_per_rank(where, value, P, M)
    if problem:
        return problem
    if any(a.kind != "F" and a.kind != "B" for acts in schedule for a in acts):
        return f"{where}: use F and B actions only (a fused backward)"
    for forward_s, backward_s in RATIOS:
        costs = Costs(forward_s=forward_s, backward_s=backward_s)
        step, fastest = simulate(schedule, costs).step_time_s, simulate(gpipe(P, M), costs).step_time_s
        if step > fastest + 1e-9:
            return (f"{where}: with forward {forward_s:g} and backward {backward_s:g} the step takes {step:g}, "
                    f"GPipe's {fastest:g}: some rank sits waiting for work it could have had (does every rank "
                    f"after rank 0 get its forwards in time?)")
    peaks = simulate(schedule, Costs(forward_s=1.0, backward_s=2.0)).peak_activations
    over = [r for r, (got, bound) in enumerate(zip(peaks, fewest_held(P, M))) if got > bound]
    if over:
        r = over[0]
        return (f"{where}: rank {r} holds {peaks[r]} micro-batches at once; a schedule just as fast can hold fewer "
                f"there (how soon can rank {r} run its first backward?)")
    return None


def real_problem(value, P: int, M: int) -> str | None:
    where = f"real run of one_f_one_b_schedule({P}, {M})"
    run, problem = real_run(where, value, P, M, pace_ms=(1, 2), tolerance=TOLERANCE)
    if problem:
        return problem
    if run.trace.peak_activations != fewest_held(P, M):
        return f"{where}: the runtime counted peak activations {run.trace.peak_activations} per rank"
    return None


def check_one_f_one_b_schedule(fn) -> bool:
    """The visible check: the constraints on ``CHECK_CASES``, then one real run at P=4, M=4 on 4 processes."""
    if not check(fn, CHECK_CASES, offline_problem, "one_f_one_b_schedule", "labs.one_f_one_b",
                 forbidden=REFERENCES):
        return False
    problem = real_problem(fn(4, 4), 4, 4)
    if problem:
        print(problem)
        return False
    print(f"one_f_one_b_schedule: valid, never slower than GPipe (forward:backward 1:2, 1:1, 2:1) and no rank holds "
          f"more than it must, for (P, M) in {CHECK_CASES}; a real run at P=4, M=4 matches the one-process "
          f"gradients -> correct")
    return True


def _cases(rng) -> list[tuple]:
    shapes = [(P, M) for P in range(2, 9) for M in (1, 2, 3, P - 2, P, P + 1, 2 * P, 9) if M >= 1]
    shapes += [(rng.randint(7, 12), rng.randint(8, 30)) for _ in range(3)]
    return [s for s in dict.fromkeys(shapes) if s not in SHOWN and s not in CHECK_CASES] + list(REAL_CASES)


def score(cases, outputs) -> tuple[float, str]:
    """Three quarters for the schedules (validator, simulator), one quarter for the real runs (both must match)."""
    offline, message = score_cases(cases, outputs, offline_problem)
    fractions, messages = [], []
    for real_case in REAL_CASES:
        fraction, text = real_run_score(cases, outputs, offline, message, real_case, offline_problem, real_problem)
        fractions.append(fraction)
        messages.append(text[len(message):].lstrip("\n; "))
    return min(fractions), message + "\n" + "\n".join(messages)


GRADED = [Graded(name="one_f_one_b_schedule", points=3, cases=lambda rng: list(dict.fromkeys(_cases(rng))),
                 score=score, forbidden=REFERENCES)]


# ---------------------------------------------------------------- the notebook's printed verdicts
@verdict(holds=[case(0.330, 0.330), case(0.33, 0.33 + 1e-12)],
         fails=[case(0.360, 0.410, why="every link 5 ms: GPipe 360 ms, 1F1B 410 ms (P=4, M=8, 10/20 ms)"),
                case(0.450, 0.405, why="stage 0 at 1.5x: GPipe 450 ms, 1F1B 405 ms")])
def same_step(first_s: float, second_s: float, rel: float = 1e-6) -> bool:
    """Two simulated steps (seconds) are the same, to ``rel`` (the simulator is exact: a tolerance for rounding)."""
    return abs(first_s - second_s) <= rel * max(abs(first_s), abs(second_s))


@verdict(holds=[case([4, 3, 2, 1], [4, 3, 2, 1]), case([8, 8, 8, 8], [8, 8, 8, 8])],
         fails=[case([8, 8, 8, 8], [4, 3, 2, 1], why="GPipe's counts taken for 1F1B's"),
                case([4, 4, 4, 4], [4, 3, 2, 1], why="P on every rank (the seed notes' O(P) read per rank)")])
def per_rank_equal(got: list, expected: list) -> bool:
    """One figure per rank (micro-batches counted at the peak, or bytes) equals the expected list, rank by rank."""
    return list(got) == list(expected)


@verdict(holds=[case([11, 22, 33], [11, 33], 1)],
         fails=[case([22, 33, 44], [11, 33], 1, why="the stage's input not among the kept tensors"),
                case([11, 22, 33, 44], [11, 33], 1, why="one tensor more than the layers need")])
def kept_are(kept: list, named: list, others: int) -> bool:
    """The storages autograd kept (ids) include every one in ``named`` and exactly ``others`` more."""
    return set(named) <= set(kept) and len(set(kept)) == len(set(named)) + others


@verdict(holds=[case([[6144], [6144], [6144], [8192]], 2048, 2)],
         fails=[case([[6144], [6144], [6144], [6144]], 2048, 2, why="the last rank without the loss's target"),
                case([[4096], [4096], [4096], [6144]], 2048, 2, why="k tensors a stage (its input not counted)")])
def kept_per_forward(saved_bytes: list, tensor_bytes: int, layers_per_stage: int) -> bool:
    """Every forward on ranks 0..P-2 saved k + 1 tensors of ``tensor_bytes``, the last rank's k + 2 (with the target):
    ``saved_bytes`` per rank the distinct sizes measured by the runtime's saved-tensor hooks."""
    k, last = layers_per_stage, len(saved_bytes) - 1
    return all(list(sizes) == [(k + 1 + (r == last)) * tensor_bytes] for r, sizes in enumerate(saved_bytes))


@verdict(holds=[case({8: [118032, 113944], 16: [120088, 113944]}, [6144, 6144])],
         fails=[case({8: [136464, 138520], 16: [185616, 185616]}, [6144, 6144], why="GPipe's totals (linear in M)"),
                case({8: [173432, 173432], 16: [239096, 239096]}, [6144, 6144],
                     why="a runtime that posts every receive at the start (+8 208 B per micro-batch)")])
def flat_within(totals_by_m: dict, slack_bytes: list) -> bool:
    """Each rank's measured total (``totals_by_m`` {M: [bytes per rank]}) differs between any two M by less than
    that rank's ``slack_bytes`` (what may move run to run: its message buffers)."""
    rows = list(totals_by_m.values())
    return all(abs(row[r] - first) < slack_bytes[r] for r, first in enumerate(rows[0]) for row in rows[1:])


@verdict(holds=[case({8: [136464, 142632], 16: [185616, 208200]}, [6144, 8192], 4112)],
         fails=[case({8: [118032, 113944], 16: [120088, 113944]}, [6144, 8192], 4112, why="1F1B's totals (flat)"),
                case({8: [136464, 142632], 16: [185616, 208200 + 8192]}, [6144, 8192], [6144, 6144],
                     why="one micro-batch too many on the last rank, slack per rank"),
                case({8: [136464, 142632], 16: [185616, 208200 + 8192]}, [6144, 8192], 4112,
                     why="one micro-batch too many held on the last rank")])
def grows_by(totals_by_m: dict, per_microbatch_bytes: list, slack_bytes) -> bool:
    """Between the smallest and the largest M, each rank's measured total grows by (M difference) x its
    ``per_microbatch_bytes``, within ``slack_bytes`` (message buffers: one number, or a list with one per rank)."""
    low, high = min(totals_by_m), max(totals_by_m)
    slack = slack_bytes if isinstance(slack_bytes, (list, tuple)) else [slack_bytes] * len(per_microbatch_bytes)
    return all(abs(totals_by_m[high][r] - totals_by_m[low][r] - (high - low) * a) <= slack[r]
               for r, a in enumerate(per_microbatch_bytes))


@verdict(holds=[case([[2048, 4096, 4096, 4096], [2048, 4096, 6144, 6144]], 2048, 3)],
         fails=[case([[2048, 4096, 6144, 10240], [2048, 6144, 10240, 22528]], 2048, 3,
                     why="GPipe without the send window: the last rank holds each gradient it sent ahead (M=8, 16)"),
                case([[2048, 4096, 4096, 4096], [2048, 4096, 8192, 6144]], 2048, 3, why="one buffer too many"),
                case([[2048, 12288, 4096, 4096]], 2048, [3, 5, 5, 3], why="a middle rank over its two windows")])
def within_buffers(peaks_per_run: list, message_bytes: int, buffers) -> bool:
    """Every rank's communication peak, in every run (``peaks_per_run``: [bytes per rank] per run), is at most
    ``buffers`` messages of ``message_bytes`` (one number for every rank, or a list with one per rank)."""
    limit = (lambda r: buffers[r]) if isinstance(buffers, (list, tuple)) else (lambda r: buffers)
    return all(peak <= limit(r) * message_bytes for run in peaks_per_run for r, peak in enumerate(run))
