"""Notebook 11 (zero bubble): the graded ``zb_h1_schedule``, what the notebook reveals once it passes, its verdicts.

``zb_h1_schedule(P, M)`` returns action lists (``labs.Action`` or strings such as ``"2W5"``), rank r holding stage r,
every backward split into I and W. It is judged by its constraints, never against one text: the validator accepts it;
simulated at F, I, W = 1, 1, 1 and 1, 1.5, 0.5 and 1, 0.8, 0.8 (each with W <= F and W <= I, where ZB-H1's bubble is
the paper's (P-1)(F+I-W), arXiv 2401.10241 §2.1) its step is no longer than M(F+I+W) + (P-1)(F+I-W) (for M < P: than
ZB-H1's own step there); no rank holds more than P micro-batches (a micro-batch is held from its F to its W: 1F1B's
peak). The learner finds how many W's each rank can hold back. Graded: 70% those checks on drawn shapes the notebook
never shows, 30% one real run on a drawn shape with gradients equal to one process.
"""
from __future__ import annotations

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, real_run, score_cases
from labs.grading import Graded
from labs.schedules import one_f_one_b, zb_h1
from labs.theory import zb_h1_bubble
from labs.timeline import Costs, simulate
from labs.viz.text import render

__all__ = ["COSTS", "GRADED", "SHOWN_CASES", "TOLERANCE", "check_zb_h1_schedule", "condition_explains",
           "gains_match", "held_back", "label", "no_weight_gradients", "real_problem", "reveal",
           "same_tensors", "schedule_problem"]

COSTS = ((1.0, 1.0, 1.0), (1.0, 1.5, 0.5), (1.0, 0.8, 0.8))  # (F, I, W), every one with W <= F and W <= I
TOLERANCE = 1e-5
SHOWN_CASES = [(4, 8), (3, 6), (4, 2)]  # the visible check's shapes (and the notebook's P=4, M=8): never graded
REAL_CHECK = (4, 4)


def held_back(P: int, M: int, hold) -> list[list[str]]:
    """1F1B's order of F's and I's; after each I the oldest W not run yet, except that rank r keeps ``hold(r)`` W's
    back, run one after each I once it holds them, the rest at the end. ``hold(r) = 0``: each W right after its I."""
    out = []
    for r, acts in enumerate(one_f_one_b(P, M)):
        row, inputs, weights = [], 0, 0
        for a in acts:
            row.append(str(a) if a.kind == "F" else f"{r}I{a.microbatch}")
            if a.kind == "B":
                inputs += 1
                if inputs > hold(r):
                    row.append(f"{r}W{weights}")
                    weights += 1
        row += [f"{r}W{m}" for m in range(weights, M)]
        out.append(row)
    return out


WRONG = {"each W right after its I": lambda P, M: held_back(P, M, lambda r: 0),
         "every W at the end": lambda P, M: held_back(P, M, lambda r: M),
         "rank r keeps r+1 W's back": lambda P, M: held_back(P, M, lambda r: r + 1),
         "one W kept back on every rank": lambda P, M: held_back(P, M, lambda r: 1),
         "P-1 W's kept back on every rank": lambda P, M: held_back(P, M, lambda r: P - 1)}


def _bound(P: int, M: int, f: float, i: float, w: float) -> float:
    """The step ZB-H1 takes: the closed form for M >= P; below that, labs' ZB-H1 simulated (the ramp dominates)."""
    if M >= P:
        return M * (f + i + w) + zb_h1_bubble(P, f, i, w)
    return simulate(held_back(P, M, lambda r: r), Costs(f, i, w)).step_time_s


@exercise("zb_h1_schedule", key=lambda case: case, trivial=lambda case: [WRONG["each W right after its I"](*case)],
          wrong=WRONG)
def schedule_problem(case, value) -> str | None:
    """What is wrong with ``value`` (plain data or Actions) as ZB-H1 for ``case`` = (P, M); None when right."""
    from labs.exercises._common import one_stage_per_rank
    P, M = case
    where = f"zb_h1_schedule({P}, {M})"
    actions, problem = one_stage_per_rank(where, value, P, M)
    if problem:
        return problem
    full = sorted({str(a) for acts in actions for a in acts if a.kind == "B"})
    if full:
        return f"{where}: {full[0]} is a full backward: split every backward into I then W"
    for f, i, w in COSTS:
        trace = simulate(actions, Costs(f, i, w))
        if max(trace.peak_activations) > P:
            rank = trace.peak_activations.index(max(trace.peak_activations))
            return (f"{where}: rank {rank} holds {max(trace.peak_activations)} micro-batches at once (each from its F "
                    f"to its W); ZB-H1 holds at most P={P}, 1F1B's peak: run a W before a forward that would exceed it")
        bound = _bound(P, M, f, i, w)
        if trace.step_time_s > bound + 1e-9:
            return (f"{where}: simulated step {trace.step_time_s:g} with F, I, W = {f:g}, {i:g}, {w:g}; ZB-H1 takes "
                    f"{bound:g}: some rank idles where a W it could keep back would fit")
    return None


def real_problem(schedule, P: int, M: int) -> str | None:
    return real_run(f"real run of zb_h1_schedule({P}, {M})", schedule, P, M, pace_ms=(1, 1, 1), tolerance=TOLERANCE)[1]


def check_zb_h1_schedule(fn) -> bool:
    """Visible check: validator and simulator on three shapes, then one real run at P=4, M=4 (gradients)."""
    passed = check(fn, SHOWN_CASES, schedule_problem, name="zb_h1_schedule",
                   reference="labs.schedules.zero_bubble.zb_h1", forbidden=_FORBIDDEN)
    if not passed:
        return False
    problem = real_problem(fn(*REAL_CHECK), *REAL_CHECK)
    if problem:
        print(problem)
        return False
    print(f"zb_h1_schedule: valid, no longer than ZB-H1 in simulation (F:I:W 1:1:1, 1:1.5:0.5, 1:0.8:0.8) within "
          f"1F1B's peak of P micro-batches for (P, M) in {SHOWN_CASES}; a real run at P=4, M=4 matches the "
          f"one-process gradients -> correct")
    return True


def label(ok: bool) -> str:
    """How later cells name the lists they run: the learner's, or labs' while the check has not passed."""
    return "your ZB-H1" if ok else "labs' ZB-H1 (your zb_h1_schedule has not passed its check yet)"


def reveal(ok: bool, P: int = 4, M: int = 8) -> None:
    """Once ``zb_h1_schedule`` passes: labs' ZB-H1 grid and how many W's each rank keeps back (the answer)."""
    if not ok:
        print("labs' ZB-H1 and how many W's each rank keeps back appear here once zb_h1_schedule passes its check")
        return
    print(render(zb_h1(P, M)))
    print("\nlabs' ZB-H1 keeps back r W's on rank r (rank 0 none, rank 3 three: 3W0 runs only after 3I3), so a rank "
          "holds at most P micro-batches; the held-back W's run after each I of the cool-down and at the end.")


# ---------------------------------------------------------------- verdicts the notebook prints (with negative controls)
def _tensors():
    import torch
    a = [torch.ones(2, 3), torch.zeros(4)]
    return a, [t.clone() for t in a], [a[0] + 1e-6, a[1]]


@verdict(holds=[case([None, None])], fails=[case([None, 0.5], why="a weight that already has a gradient")])
def no_weight_gradients(grads: list) -> bool:
    """Every ``.grad`` in ``grads`` is still None (no weight gradient computed yet)."""
    return all(g is None for g in grads)


@verdict(holds=lambda: [case(_tensors()[0], _tensors()[1])],
         fails=lambda: [case(_tensors()[0], _tensors()[2], why="one entry off by 1e-6: not exactly equal"),
                        case(_tensors()[0], _tensors()[0][:1], why="a tensor missing")])
def same_tensors(a: list, b: list) -> bool:
    """Both lists hold the same number of tensors, each pair exactly equal (``torch.equal``)."""
    import torch
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@verdict(holds=[case(33, 30, 27, P=4, W=1)],
         fails=[case(33, 33, 27, P=4, W=1, why="the old claim: splitting alone changes nothing"),
                case(33, 30, 30, P=4, W=1, why="holding W back gains nothing")])
def gains_match(fused_s: float, split_s: float, held_s: float, P: int, W: float) -> bool:
    """Splitting the backward (each W right after its I) shortens the step by (P-1)W, and keeping W's back by
    another (P-1)W: fused - split == split - held == (P-1)W (same unit)."""
    return abs(fused_s - split_s - (P - 1) * W) < 1e-9 and abs(split_s - held_s - (P - 1) * W) < 1e-9


@verdict(holds=[case([(1, 1, 1, 27, 27), (1, 1, 2, 35, 32), (0.5, 1, 1, 23, 21.5)])],
         fails=[case([(1, 1, 1, 27, 27), (0.5, 1, 1, 23, 21.5)], condition="W <= I",
                     why="the condition W <= I alone (the issue's first reading) misses F < W")])
def condition_explains(rows: list, condition: str = "W <= F and W <= I") -> bool:
    """For rows (F, I, W, simulated step, the paper's step): the paper's form is exact on exactly the rows where
    ``condition`` holds ("W <= F and W <= I", or "W <= I" for the negative control)."""
    def holds(F, I, W):
        return W <= I if condition == "W <= I" else W <= min(F, I)
    return all((abs(step - paper) < 1e-9) == holds(F, I, W) for F, I, W, step, paper in rows)


# ---------------------------------------------------------------- graded (grader side: cases and score)
_FORBIDDEN = ("labs.schedules.zero_bubble.zb_h1", "labs.schedules.make")


def _cases(rng) -> list[tuple]:
    shapes = sorted({(P, M) for P in range(2, 7) for M in (P, P + 1, 2 * P, 9, 3 * P)} - set(SHOWN_CASES))
    real = rng.choice([(3, 4), (3, 5), (4, 5)])
    return sorted(set(rng.sample(shapes, 10) + [(3, 1), (5, 2), real]) - set(SHOWN_CASES))


def _score(cases, outputs) -> tuple[float, str]:
    fraction, message = score_cases(cases, outputs, schedule_problem)
    real = [(c, out) for c, out in zip(cases, outputs) if c in ((3, 4), (3, 5), (4, 5))]
    (P, M), out = real[0]
    if isinstance(out, dict) or schedule_problem((P, M), out) is not None:
        return 0.7 * fraction, message + f"; the real run (P={P}, M={M}) was skipped: its lists fail the checks"
    problem = real_problem(out, P, M)
    return 0.7 * fraction + (0.0 if problem else 0.3), message + (f"; {problem}" if problem else
                                                                   "; the real run matches one process")


GRADED = [Graded("zb_h1_schedule", 3, cases=_cases, score=_score, forbidden=_FORBIDDEN)]
