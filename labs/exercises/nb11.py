"""Notebook 11 (zero bubble): checks and graded tests of ``zb_h1_schedule``.

``zb_h1_schedule(P, M)`` returns ZB-H1 as action lists (``labs.Action`` or strings such as ``"2W5"``), rank r
holding stage r. It is judged by what it does: the validator accepts it (every F, B and W once, nothing waits
forever); rank r runs only stage r; simulated with F:B:W costs (1, 1, 1) and (1, 1.5, 0.5) its step takes no longer
than M(F+B+W) + (P-1)(F+B-W) (ZB-H1's bubble; for M < P, labs' ZB-H1's simulated step); no rank holds more than P micro-batches (1F1B's peak, a micro-batch
being held from its F to its W). Then it runs on real processes: gradients equal to one process.
"""
from __future__ import annotations

from labs.exercises._common import Answer, one_stage_per_rank, real_run
from labs.grading import Graded
from labs.grading.kernel import forbidden_calls
from labs.schedules import zero_bubble
from labs.theory import zb_h1_bubble
from labs.timeline import Costs, simulate

__all__ = ["COSTS", "GRADED", "TOLERANCE", "check_zb_h1_schedule", "real_problem", "schedule_problem"]


COSTS = ((1.0, 1.0, 1.0), (1.0, 1.5, 0.5))
TOLERANCE = 1e-5


def schedule_problem(schedule, P: int, M: int) -> str | None:
    """What is wrong with ``schedule`` (plain data or Actions) as ZB-H1 for (P, M); None when it is right."""
    where = f"zb_h1_schedule({P}, {M})"
    actions, problem = one_stage_per_rank(where, schedule, P, M)
    if problem:
        return problem
    if not any(a.kind == "W" for acts in actions for a in acts):
        return f"{where}: no W actions: split each backward into B and W"
    for f, b, w in COSTS:
        trace = simulate(actions, Costs(f, b, w))
        # M >= P: the closed form; fewer micro-batches than ranks: what labs' ZB-H1 takes there (the ramp dominates)
        bound = (M * (f + b + w) + zb_h1_bubble(P, f, b, w) if M >= P
                 else simulate(zero_bubble.zb_h1(P, M), Costs(f, b, w)).step_time_s)
        if trace.step_time_s > bound + 1e-9:
            how = "M(F+B+W) + (P-1)(F+B-W)" if M >= P else "with M < P"
            return (f"{where}: simulated step {trace.step_time_s:g} with F, B, W = {f:g}, {b:g}, {w:g}; ZB-H1 takes "
                    f"{bound:g} ({how}): some W's could fill more of the gaps")
        if max(trace.peak_activations) > P:
            return (f"{where}: peak micro-batches held per rank {trace.peak_activations}: ZB-H1 holds at most P={P}, "
                    f"1F1B's peak (run a W before the next F once a rank holds P)")
    return None


def real_problem(schedule, P: int, M: int) -> str | None:
    return real_run(f"real run of zb_h1_schedule({P}, {M})", schedule, P, M, pace_ms=(1, 1, 1), tolerance=TOLERANCE)[1]


def check_zb_h1_schedule(fn) -> bool:
    """Visible check: validator and simulator on three shapes, then one real run at P=4, M=4."""
    cases, answers = [(4, 8), (3, 6), (4, 2)], []
    try:
        with forbidden_calls(("labs.schedules.zero_bubble.zb_h1",)) as calls:  # only the learner's calls run guarded
            for P, M in cases:
                answers.append(Answer(fn, f"zb_h1_schedule({P}, {M})", P, M))
    except NotImplementedError:
        print("not implemented yet: zb_h1_schedule (the notebook carries on with labs.schedules.zero_bubble.zb_h1)")
        return False
    if calls:
        print("zb_h1_schedule calls labs' own zb_h1 (directly or through labs.make): write the lists yourself; "
              "the graded version refuses that call")
        return False
    problems = [p for (P, M), answer in zip(cases, answers) if (p := answer.problem or
                                                                 schedule_problem(answer.value, P, M))]
    if not problems:
        problems = [p for p in [real_problem(fn(4, 4), 4, 4)] if p]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"zb_h1_schedule: valid, as fast as ZB-H1 in simulation (F:B:W 1:1:1 and 1:1.5:0.5) within 1F1B's "
              f"peak of P micro-batches for (P, M) in {cases}; a real run at P=4, M=4 matches the one-process "
              f"gradients -> correct")
    return not problems


# ---------------------------------------------------------------- graded (grader side: cases and score)


def _cases(rng) -> list[tuple]:
    shapes = [(P, M) for P in range(2, 7) for M in (1, 2, P - 1, P, P + 1, 2 * P, 9) if M >= 1]
    picked = rng.sample(sorted(set(shapes)), 10)
    return sorted(set(picked + [(4, 8), (3, 5), (4, 3)]))


def _score(cases, outputs) -> tuple[float, str]:
    failures = []
    for (P, M), out in zip(cases, outputs):
        if isinstance(out, dict):
            failures.append((P, f"zb_h1_schedule({P}, {M}) gave {out}"))
            continue
        problem = schedule_problem(out, P, M)
        if problem:
            failures.append((P, problem))
    offline = 1 - len(failures) / len(cases)
    real = 0.0
    real_case = next(((P, M), out) for (P, M), out in zip(cases, outputs) if (P, M) == (4, 3))
    if not isinstance(real_case[1], dict) and schedule_problem(real_case[1], 4, 3) is None:
        problem = real_problem(real_case[1], 4, 3)
        real = 1.0 if problem is None else 0.0
        if problem:
            failures.append((4, problem))
    else:
        failures.append((0, "the real run (P=4, M=3) was skipped: the schedule must first pass the offline checks"))
    fraction = 0.7 * offline + 0.3 * real
    if not failures:
        return 1.0, f"all {len(cases)} cases valid and as fast as ZB-H1; the real run matches one process"
    worst = max(failures, key=lambda f: f[0])[1]  # the most instructive: the largest pipeline that failed
    return fraction, f"{len(failures)} problem(s); e.g. {worst}"


GRADED = [Graded("zb_h1_schedule", 3, cases=_cases, score=_score, forbidden=("labs.schedules.zero_bubble.zb_h1",))]
