"""Notebook 12 (capstone): checks and graded tests of ``my_schedule``, ``to_torch_csv`` and ``choose_design``.

* ``my_schedule(P, M, cap)``: action lists (F and B only, one stage per rank) in which no rank ever holds more than
  ``cap`` micro-batches' activations (cap < P: no schedule of ``labs`` or PyTorch has this property, GPipe holds M and
  1F1B P on rank 0), with the shortest step the cap allows. Judged by the validator, the simulator (peak per rank,
  step at F = 1, B = 2 against the grader's own capped 1F1B, ``capped_reference``, forbidden) and, for one case, by
  training the tiny GPT on real ranks against one process.
* ``to_torch_csv(schedule)``: the lists in PyTorch's compute-only CSV (row r = rank r, comma-separated; a split
  backward's B written ``I``). Judged against the notation on schedules the grader sends.
* ``choose_design(cap, costs)``: ``labs.exercises.nb12_design``.
"""
from __future__ import annotations

import random

from labs.course.capstone import train, train_reference
from labs.course.verdicts import case, verdict
from labs.exercises import nb12_design as design
from labs.exercises._common import Answer, report
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, RankFailed
from labs.schedules import ScheduleError, make, parse, validate
from labs.timeline import Costs, simulate

__all__ = ["GRADED", "TOLERANCE", "capped_reference", "check_choose_design", "check_my_schedule",
           "check_to_torch_csv", "csv_problem", "expected_csv", "learns", "run_my_schedule", "run_to_torch_csv", "schedule_credit",
           "training_problem"]

TOLERANCE = 1e-5
SCHEDULE_FORBIDDEN = ("labs.exercises.nb12.capped_reference", "labs.exercises.nb12._capped_1f1b",
                      "labs.exercises.nb12._waves")


# ---------------------------------------------------------------- my_schedule


def _capped_1f1b(P: int, M: int, cap: int) -> list[list[str]]:
    lists = []
    for r in range(P):
        warmup = min(P - 1 - r, cap - 1, M)
        actions = [f"{r}F{m}" for m in range(warmup)]
        for i in range(M - warmup):
            actions += [f"{r}F{warmup + i}", f"{r}B{i}"]
        lists.append(actions + [f"{r}B{m}" for m in range(M - warmup, M)])
    return lists


def _waves(P: int, M: int, cap: int) -> list[list[str]]:
    lists = [[] for _ in range(P)]
    for start in range(0, M, cap):
        wave = range(start, min(M, start + cap))
        for r in range(P):
            lists[r] += [f"{r}F{m}" for m in wave] + [f"{r}B{m}" for m in wave]
    return lists


def capped_reference(P: int, M: int, cap: int) -> list[list[str]]:
    """The grader's schedule within the cap: the faster (simulated, F = 1, B = 2) of 1F1B with min(P - 1 - r,
    cap - 1) warm-up forwards on rank r, and GPipe run in waves of ``cap`` micro-batches. Not proven optimal: a
    faster schedule within the cap earns full credit too."""
    both = [make_lists(P, M, cap) for make_lists in (_capped_1f1b, _waves)]
    return min(both, key=lambda lists: _simulated(validate(parse(lists), M=M, P=P))[0])


def _simulated(actions) -> tuple[float, list[int]]:
    trace = simulate(actions, Costs(1.0, 2.0))
    return trace.step_time_s, trace.peak_activations


def schedule_credit(out, P: int, M: int, cap: int) -> tuple[float, str | None]:
    """(credit, problem) without training: 1 for valid F/B lists within the cap, at least as fast as the grader's
    ``capped_reference`` (simulated, F = 1, B = 2, free link); 0.5 within the cap but slower; 0 otherwise."""
    where = f"my_schedule({P}, {M}, cap={cap})"
    try:
        actions = validate(parse(out), M=M, P=P)
    except (ScheduleError, TypeError, ValueError) as error:
        return 0.0, f"{where}: the validator rejects it: {error}"
    if len(actions) != P or any(a.kind not in ("F", "B") or a.stage != r for r, acts in enumerate(actions)
                                for a in acts):
        return 0.0, f"{where}: write {P} lists of F and B (a full backward), rank r running stage r only"
    step, peaks = _simulated(actions)
    if max(peaks) > cap:
        r = peaks.index(max(peaks))
        return 0.0, f"{where}: rank {r} holds {max(peaks)} micro-batches' activations at once, over the cap"
    best = _simulated(validate(parse(capped_reference(P, M, cap)), M=M, P=P))[0]
    if step > best * (1 + 1e-9):
        return 0.5, (f"{where}: within the cap, but its step takes {step:g} (F = 1, B = 2); the grader's schedule "
                     f"within the cap takes {best:g}")
    return 1.0, None


def training_problem(schedule, P: int, M: int, steps: int = 3) -> str | None:
    where = f"my_schedule({P}, {M}, ...)"
    try:
        actions = validate(parse(schedule), M=M, P=P)
        losses = train(actions, steps=steps, batch_size=4 * M, timeout_s=60)
    except (RankFailed, LaunchTimeout, ScheduleError, ValueError) as error:
        return f"{where}: training failed: {str(error).strip().splitlines()[0]}"
    reference = train_reference(steps=steps, M=M, batch_size=4 * M)
    error = max(abs(a - b) for a, b in zip(losses, reference))
    if error > TOLERANCE:
        return f"{where}: step losses differ from one process by {error:.1e} (more than {TOLERANCE:g})"
    return None


VISIBLE_SCHEDULES = [(4, 4, 2, True), (5, 10, 3, False), (4, 8, 1, False)]


def _schedule_run(fn, P, M, cap, trained):
    from labs.grading.kernel import forbidden_calls
    with forbidden_calls(SCHEDULE_FORBIDDEN) as calls:
        try:
            value = fn(P, M, cap)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - a wrong answer, reported as such
            return {"error": f"{type(error).__name__}: {error}"}
    if calls:
        return {"forbidden": calls[0]}
    return [[str(a) for a in acts] for acts in parse(value)] if _parses(value) else value


def _parses(value) -> bool:
    try:
        parse(value)
        return True
    except Exception:  # noqa: BLE001
        return False


def _schedule_judge(case, out) -> tuple[float, str | None]:
    P, M, cap, trained = case
    if isinstance(out, dict):
        return 0.0, (f"my_schedule({P}, {M}, cap={cap}) calls the grader's {out['forbidden']}" if "forbidden" in out
                     else f"my_schedule({P}, {M}, cap={cap}) gave {out}")
    credit, problem = schedule_credit(out, P, M, cap)
    trouble = training_problem(out, P, M) if credit and trained else None
    return (0.0, trouble) if trouble else (credit, problem)


def check_my_schedule(fn) -> bool:
    """The lists for three (P, M, cap), one of them trained on 4 real ranks. Never raises."""
    problems = []
    for case in VISIBLE_SCHEDULES:
        try:
            out = _schedule_run(fn, *case)
        except NotImplementedError:
            print("not implemented yet: my_schedule (the notebook carries on with the grader's schedule under the "
                  "cap, labs.exercises.nb12.capped_reference)")
            return False
        credit, problem = _schedule_judge(case, out)
        if credit < 1:
            problems.append(problem)
    return report(problems, f"my_schedule: valid, within the cap and as fast as the grader's schedule in "
                            f"{len(VISIBLE_SCHEDULES)} cases; 3 training steps of the tiny GPT on 4 ranks give "
                            f"the one-process losses within {TOLERANCE:g} -> correct")


def _schedule_cases(rng) -> list[tuple]:
    trained = (4, rng.choice([6, 8]), rng.choice([2, 3]), True)
    seen, drawn = {c[:3] for c in VISIBLE_SCHEDULES} | {trained[:3]}, []
    while len(drawn) < 3:
        P = rng.randint(3, 6)
        case = (P, rng.randint(P + 1, 3 * P), rng.randint(1, P - 1), False)
        if case[:3] not in seen:
            seen.add(case[:3])
            drawn.append(case)
    return [trained] + drawn


def _schedule_score(cases, outputs) -> tuple[float, str]:
    judged = [_schedule_judge(tuple(case), out) for case, out in zip(cases, outputs)]
    problems = [p for _, p in judged if p]
    return (sum(c for c, _ in judged) / len(judged),
            problems[0] if problems else "within the cap, as fast as the grader's, and trains like one process")


def run_my_schedule(fn, P, M, cap, trained):
    """Kernel side: the learner's lists as plain strings (the grader judges them in its own process)."""
    value = fn(P, M, cap)
    return [[str(a) for a in acts] for acts in parse(value)] if _parses(value) else value


@verdict(holds=[case(1e-7, 4.68, 3.24)], fails=[case(1e-7, 4.68, 4.40, why="a model that does not learn"),
                                              case(2e-3, 4.68, 3.24, why="losses that drift from one process")])
def learns(worst, first, last) -> bool:
    """The pipeline's losses equal one process within 1e-5 at every step, and fall by more than 0.5."""
    return worst < TOLERANCE and first - last > 0.5


# ---------------------------------------------------------------- to_torch_csv


def expected_csv(schedule) -> str:
    # parse reads the course's old split lists (B next to W) with I's: PyTorch's notation, the four kinds as they are
    return "".join(",".join(str(a) for a in acts) + "\n" for acts in parse(schedule))


def csv_problem(out, schedule, name: str) -> str | None:
    want = expected_csv(schedule)
    if not isinstance(out, str):
        return f"to_torch_csv({name}) returned {type(out).__name__}, not the CSV text"
    got = out.replace("\r\n", "\n")
    if got.rstrip("\n") != want.rstrip("\n"):
        rows, wants = got.rstrip("\n").split("\n"), want.rstrip("\n").split("\n")
        for r, (a, b) in enumerate(zip(rows, wants)):
            if a != b:
                return f"to_torch_csv({name}): row {r} is {a[:60]!r}..., expected {b[:60]!r}..."
        return f"to_torch_csv({name}): {len(rows)} rows, expected {len(wants)} (one per rank)"
    return None


def check_to_torch_csv(fn) -> bool:
    cases = [("1f1b(2, 2)", make("1f1b", 2, 2)), ("zb-h1(4, 4)", make("zb-h1", 4, 4)), ("zb-v(2, 2)", make("zb-v", 2, 2))]
    problems = []
    try:
        for name, schedule in cases:
            answer = Answer(fn, f"to_torch_csv({name})", schedule)
            problems.append(answer.problem or csv_problem(answer.value, schedule, name))
    except NotImplementedError:
        print("not implemented yet: to_torch_csv (the notebook carries on with labs.course.torch_bridge.to_csv)")
        return False
    problems = [p for p in problems if p]
    for p in problems:
        print(p)
    if not problems:
        print("to_torch_csv: PyTorch's notation for 1F1B, ZB-H1 (B written I) and ZB-V -> correct")
    return not problems


def _csv_cases(rng) -> list[tuple]:
    picks = [("1f1b", rng.randint(2, 5), rng.randint(1, 8), 1), ("zb-h1", rng.randint(2, 5), rng.randint(2, 8), 1),
             ("zb-v", rng.randint(2, 4), rng.randint(2, 6), 2), ("gpipe", rng.randint(2, 5), rng.randint(1, 6), 1)]
    return [([[str(a) for a in acts] for acts in make(name, P, M, v)],) for name, P, M, v in picks]


def run_to_torch_csv(fn, schedule):
    """Kernel side: the grader sends plain strings; the learner's function gets ``labs.Action`` lists."""
    return fn(parse(schedule))


def _csv_score(cases, outputs) -> tuple[float, str]:
    problems = [p for (schedule,), out in zip(cases, outputs)
                if (p := (f"to_torch_csv gave {out}" if isinstance(out, dict) else csv_problem(out, schedule, "...")))]
    return 1 - len(problems) / len(cases), problems[0] if problems else "PyTorch's notation in every case"


# ---------------------------------------------------------------- choose_design


def check_choose_design(fn) -> bool:
    """The learner's designs for the notebook's three caps and cost sets. Never raises."""
    problems = []
    for cap, costs in design.visible():
        try:
            answer = Answer(fn, f"choose_design({cap}, ...)", cap, dict(costs))
        except NotImplementedError:
            print("not implemented yet: choose_design (the notebook carries on with the grader's search, "
                  "labs.exercises.nb12_design.best_design)")
            return False
        problem = answer.problem or design.design_problem(answer.value, cap, costs)[1]
        if problem:
            problems.append(problem)
    return report(problems, f"choose_design: the fastest design that fits for {len(design.visible())} caps and "
                            f"cost sets -> correct")


GRADED = [
    Graded("my_schedule", 2, cases=_schedule_cases, score=_schedule_score,
           run="labs.exercises.nb12:run_my_schedule", forbidden=SCHEDULE_FORBIDDEN),
    Graded("to_torch_csv", 1, cases=_csv_cases, score=_csv_score, run="labs.exercises.nb12:run_to_torch_csv",
           forbidden=("labs.course.torch_bridge.to_csv",)),
    Graded("choose_design", 3, cases=design.cases, score=design.score,
           forbidden=("labs.exercises.nb12_design.best_design", "labs.exercises.nb12_design.design_outcome")),
]
