"""Notebook 12 (capstone): checks and graded tests of ``my_schedule``, ``to_torch_csv`` and ``choose_design``.

* ``my_schedule(P, M)``: the learner's own action lists (any schedule) for the tiny GPT on P ranks, one stage per
  rank or v stages per rank. Judged by the validator and by training: losses equal one-process training step by step.
* ``to_torch_csv(schedule)``: the lists in PyTorch's compute-only CSV (row r = rank r, comma-separated; a split
  backward's B written ``I``). Judged against the notation on schedules the grader sends.
* ``choose_design(cap, costs)``: schedule, M and v for the shortest simulated step whose activations fit ``cap``
  samples per rank (``design_outcome`` below is the cost and memory model). Judged on caps and costs drawn at grading.
"""
from __future__ import annotations

import random

from labs.course.capstone import train, train_reference
from labs.exercises._common import Answer
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, RankFailed
from labs.schedules import ScheduleError, make, parse, validate
from labs.timeline import Costs, simulate

__all__ = ["DESIGNS", "GRADED", "TOLERANCE", "best_design", "check_choose_design", "check_my_schedule",
           "check_to_torch_csv", "csv_problem", "design_outcome", "design_problem", "draw_costs", "expected_csv",
           "options", "run_to_torch_csv", "training_problem"]

TOLERANCE = 1e-5
DESIGNS = [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("interleaved", 4), ("zb-h1", 1), ("zb-v", 2)]


# ---------------------------------------------------------------- my_schedule


def training_problem(schedule, P: int, M: int, steps: int = 3) -> str | None:
    where = f"my_schedule({P}, {M})"
    try:
        actions = validate(parse(schedule), M=M, P=P)
    except ScheduleError as error:
        return f"{where}: the validator rejects it: {error}"
    try:
        losses = train(actions, steps=steps, batch_size=4 * M, timeout_s=60)
    except (RankFailed, LaunchTimeout, ScheduleError, ValueError) as error:
        return f"{where}: training failed: {str(error).strip().splitlines()[0]}"
    reference = train_reference(steps=steps, M=M, batch_size=4 * M)
    error = max(abs(a - b) for a, b in zip(losses, reference))
    if error > TOLERANCE:
        return f"{where}: step losses differ from one process by {error:.1e} (more than {TOLERANCE:g})"
    return None


def check_my_schedule(fn, P: int = 4, M: int = 4) -> bool:
    try:
        answer = Answer(fn, f"my_schedule({P}, {M})", P, M)
    except NotImplementedError:
        print("not implemented yet: my_schedule (the notebook carries on with labs' zb-h1)")
        return False
    problem = answer.problem or training_problem(answer.value, P, M)
    print(problem or f"my_schedule({P}, {M}): valid; 3 training steps of the tiny GPT on {P} ranks give the "
                     f"one-process losses within {TOLERANCE:g} -> correct")
    return problem is None


def _schedule_cases(rng) -> list[tuple]:
    return [(4, 4), (4, 8)]


def _schedule_score(cases, outputs) -> tuple[float, str]:
    problems = [p for (P, M), out in zip(cases, outputs)
                if (p := (f"my_schedule({P}, {M}) gave {out}" if isinstance(out, dict) else training_problem(out, P, M)))]
    return 1 - len(problems) / len(cases), problems[-1] if problems else "trains like one process in every case"


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


def design_outcome(schedule: str, M: int, v: int, costs: dict) -> tuple[float, float]:
    """(simulated step time, peak activations per rank in samples) of one design under ``costs``.

    ``costs``: P ranks, a batch of ``batch`` samples; per stage and sample ``forward``, ``backward`` (input gradient)
    and ``weight`` (weight gradient) ms; every action also costs ``per_action`` ms; a message ``link`` ms. A fused
    backward costs backward + weight. A chunk (v per rank) costs 1/v of a stage and holds 1/v of its activations.
    """
    P, size = costs["P"], costs["batch"] / M
    split = schedule.startswith("zb")
    scale = size / v
    backward = costs["backward"] + (0 if split else costs["weight"])
    trace = simulate(make(schedule, P, M, v), Costs(costs["per_action"] + costs["forward"] * scale,
                                                    costs["per_action"] + backward * scale,
                                                    costs["per_action"] + costs["weight"] * scale if split else 0.0,
                                                    costs["link"]))
    return trace.step_time_s, max(trace.peak_activations) * scale


def options(costs: dict) -> list[tuple[str, int, int]]:
    P, batch = costs["P"], costs["batch"]
    ms = [m for m in range(1, batch + 1) if batch % m == 0 and m <= 32]
    return [(name, m, v) for name, v in DESIGNS for m in ms if not (name == "interleaved" and m % P)]


def best_design(cap: float, costs: dict):
    """The grader's search: the fastest design that fits, as ``{"schedule", "M", "v"}``, or None."""
    outcomes = [(design_outcome(*o, costs), o) for o in options(costs)]
    fits = [(step, o) for (step, peak), o in outcomes if peak <= cap + 1e-9]
    return dict(zip(("schedule", "M", "v"), min(fits)[1])) if fits else None


def design_problem(out, cap: float, costs: dict) -> tuple[float, str | None]:
    """(credit, problem): 1 for a fastest fitting design (within 2%), 0.5 for one that fits but is slower."""
    where = f"choose_design(cap={cap:g}, P={costs['P']}, link={costs['link']:g}, per_action={costs['per_action']:g})"
    try:
        name, M, v = out["schedule"], int(out["M"]), int(out["v"])
        step, peak = design_outcome(name, M, v, costs)
    except Exception as error:  # noqa: BLE001 - any malformed answer
        return 0.0, f"{where}: cannot evaluate {out!r} ({type(error).__name__}: {error}); return " \
                    f"{{'schedule': name, 'M': int, 'v': int}}"
    best = best_design(cap, costs)
    best_step = design_outcome(best["schedule"], best["M"], best["v"], costs)[0]
    if peak > cap + 1e-9:
        return 0.0, f"{where}: {name} M={M} v={v} holds {peak:g} samples per rank at its peak, over the cap"
    if step > best_step * 1.02:
        return 0.5, (f"{where}: {name} M={M} v={v} fits but takes {step:.1f} ms; a design that fits takes "
                     f"{best_step:.1f} ms")
    return 1.0, None


def draw_costs(rng) -> tuple[float, dict]:
    costs = {"P": 4, "batch": 64, "forward": round(rng.uniform(0.5, 2.0), 2), "link": round(rng.uniform(0, 3), 1),
             "per_action": round(rng.uniform(0.2, 4.0), 1)}
    costs["backward"] = round(costs["forward"] * rng.uniform(0.8, 1.2), 2)
    costs["weight"] = round(costs["forward"] * rng.uniform(0.6, 1.2), 2)
    return rng.choice([12, 16, 24, 32, 48, 64]), costs


def check_choose_design(fn) -> bool:
    rng = random.Random(12)
    cases = [draw_costs(rng) for _ in range(3)]
    try:
        results = []
        for cap, costs in cases:
            answer = Answer(fn, f"choose_design({cap}, ...)", cap, dict(costs))
            results.append((0.0, answer.problem) if answer.problem else design_problem(answer.value, cap, costs))
    except NotImplementedError:
        print("not implemented yet: choose_design (the notebook carries on with the grader's search, "
              "labs.exercises.nb12.best_design)")
        return False
    problems = [p for _, p in results if p]
    for p in problems:
        print(p)
    if not problems:
        print(f"choose_design: the fastest design that fits for {len(cases)} caps and cost sets -> correct")
    return not problems


def _design_cases(rng) -> list[tuple]:
    return [draw_costs(rng) for _ in range(5)]


def _design_score(cases, outputs) -> tuple[float, str]:
    credits, problems = [], []
    for (cap, costs), out in zip(cases, outputs):
        credit, problem = (0.0, f"choose_design gave {out}") if out is None or "error" in out or "forbidden" in out \
            else design_problem(out, cap, costs)
        credits.append(credit)
        if problem:
            problems.append(problem)
    return sum(credits) / len(credits), problems[0] if problems else "the fastest fitting design in every case"


GRADED = [
    Graded("my_schedule", 2, cases=_schedule_cases, score=_schedule_score),
    Graded("to_torch_csv", 1, cases=_csv_cases, score=_csv_score, run="labs.exercises.nb12:run_to_torch_csv",
           forbidden=("labs.course.torch_bridge.to_csv",)),
    Graded("choose_design", 3, cases=_design_cases, score=_design_score,
           forbidden=("labs.exercises.nb12.best_design",)),
]
