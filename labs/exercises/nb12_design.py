"""Notebook 12, exercise 3: ``choose_design(cap, costs)`` -> {"schedule", "M", "v"}, the fastest design whose
activations fit ``cap`` samples per rank.

The learner gets ``step_ms(schedule, M, v, costs)``, the simulated step of a design, and nothing about its memory:
working out how many samples each schedule holds on its fullest rank (GPipe all of its micro-batches, 1F1B up to P,
interleaving's chunks 1/v of a stage each, zero bubble's W's holding theirs until they run: notebooks 04, 05, 11) is
the exercise. ``design_outcome`` (step and peak) and ``best_design`` are the grader's and forbidden. Hidden cases are
drawn so that each plausible wrong memory model (``MISTAKES``) loses credit on at least two of them. (Two other
mistakes change no answer here and are not graded: a chunk counted as a whole stage, since interleaving never wins
under these costs and caps, and W's that hold nothing, since ZB-H1's fullest rank holds P micro-batches as 1F1B's.)
"""
from __future__ import annotations

import json
import random

from ._credit import greedy_cover

from labs.schedules import make
from labs.timeline import Costs, simulate

__all__ = ["DESIGNS", "MISTAKES", "best_design", "cases", "design_outcome", "design_problem", "draw_costs",
           "options", "score", "step_ms", "wrong_choice"]

DESIGNS = [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("interleaved", 4), ("zb-h1", 1), ("zb-v", 2)]


def _trace(schedule: str, M: int, v: int, costs: dict):
    P, size = costs["P"], costs["batch"] / M
    split = schedule.startswith("zb")
    scale = size / v
    backward = costs["backward"] + (0 if split else costs["weight"])
    return simulate(make(schedule, P, M, v), Costs(costs["per_action"] + costs["forward"] * scale,
                                                   costs["per_action"] + backward * scale,
                                                   costs["per_action"] + costs["weight"] * scale if split else 0.0,
                                                   costs["link"])), scale


def step_ms(schedule: str, M: int, v: int, costs: dict) -> float:
    """The simulated step (ms) of ``schedule`` with M micro-batches and v chunks per rank under ``costs``.

    ``costs``: P ranks, a batch of ``batch`` samples; per stage and sample ``forward``, ``backward`` (input gradient)
    and ``weight`` (weight gradient) ms; every action also costs ``per_action`` ms; a message ``link`` ms. A fused
    backward costs backward + weight. A chunk (v per rank) costs 1/v of a stage. Raises ScheduleError / InputError
    for a design that does not exist (interleaved needs M a multiple of P)."""
    return _trace(schedule, M, v, costs)[0].step_time_s


def design_outcome(schedule: str, M: int, v: int, costs: dict) -> tuple[float, float]:
    """The grader's model: (simulated step ms, peak activations on the fullest rank in samples; a chunk holds 1/v
    of a stage's)."""
    trace, scale = _trace(schedule, M, v, costs)
    return trace.step_time_s, max(trace.peak_activations) * scale


def options(costs: dict) -> list[tuple[str, int, int]]:
    P, batch = costs["P"], costs["batch"]
    ms = [m for m in range(1, batch + 1) if batch % m == 0 and m <= 32]
    return [(name, m, v) for name, v in DESIGNS for m in ms if not (name == "interleaved" and m % P)]


def _table(costs: dict) -> dict:
    return {o: design_outcome(*o, costs) for o in options(costs)}


def _fastest(table: dict, cap: float, peak=lambda o, step_peak, table: step_peak[1]):
    fits = [(sp[0], o) for o, sp in table.items() if peak(o, sp, table) <= cap + 1e-9]
    return dict(zip(("schedule", "M", "v"), min(fits)[1])) if fits else None


def best_design(cap: float, costs: dict):
    """The grader's search: the fastest design that fits, as ``{"schedule", "M", "v"}``, or None."""
    return _fastest(_table(costs), cap)


MISTAKES = {  # a wrong model of the peak, from the true table {design: (step, peak)}
    "micro-batches counted, not samples": lambda o, sp, t: sp[1] * o[1] * o[2] / 64,
    "GPipe holds P micro-batches, like 1F1B": lambda o, sp, t: (
        min(t[("1f1b", o[1], 1)][1], sp[1]) if o[0] == "gpipe" else sp[1]),
    "1F1B holds every micro-batch, like GPipe": lambda o, sp, t: 64 if o[0] in ("1f1b", "zb-h1") else sp[1],
}


def wrong_choice(name: str, cap: float, costs: dict):
    """The design a learner with the mistaken memory model ``name`` would choose."""
    return _fastest(_table(costs), cap, MISTAKES[name])


def design_problem(out, cap: float, costs: dict, table: dict | None = None) -> tuple[float, str | None]:
    """(credit, problem): 1 for a fastest fitting design (within 2%), 0.5 for one that fits but is slower."""
    where = f"choose_design(cap={cap:g}, P={costs['P']}, link={costs['link']:g}, per_action={costs['per_action']:g})"
    table = table or _table(costs)
    try:
        name, M, v = out["schedule"], out["M"], out["v"]
        step, peak = table[(name, M, v)]
    except (TypeError, KeyError, IndexError):
        return 0.0, (f"{where}: {str(out)[:80]} is not one of the designs; return {{'schedule': name, 'M': int, "
                     f"'v': int}} with M dividing the batch, at most 32 (interleaved: v 2 or 4, M a multiple of P; "
                     f"zb-v: v 2; others v 1)")
    best = _fastest(table, cap)
    if best is None:
        return 0.0, f"{where}: no design fits this cap"
    best_step = table[tuple(best.values())][0]
    if peak > cap + 1e-9:
        return 0.0, f"{where}: {name} M={M} v={v} holds {peak:g} samples on its fullest rank, over the cap"
    if step > best_step * 1.02:
        return 0.5, (f"{where}: {name} M={M} v={v} fits but takes {step:.1f} ms; a design that fits takes "
                     f"{best_step:.1f} ms")
    return 1.0, None


def draw_costs(rng) -> tuple[float, dict]:
    costs = {"P": 4, "batch": 64, "forward": round(rng.uniform(0.5, 2.0), 2), "link": round(rng.uniform(0, 3), 1),
             "per_action": round(rng.uniform(0.2, 4.0), 1)}
    costs["backward"] = round(costs["forward"] * rng.uniform(0.8, 1.2), 2)
    costs["weight"] = round(costs["forward"] * rng.uniform(0.6, 1.2), 2)
    return rng.choice([8, 12, 16, 24, 32, 48]), costs


VISIBLE_SEED = 12


def cases(rng: random.Random, count: int = 5, quota: int = 2, pool: int = 24) -> list[tuple]:
    """``count`` hidden (cap, costs) cases from ``pool`` draws, chosen greedily so that every mistaken memory model
    loses credit on at least ``quota`` of them; never the notebook's own. RuntimeError if the draws fall short."""
    shown = {json.dumps(c, sort_keys=True) for c in visible()}
    bank = []
    for _ in range(pool):
        cap, costs = draw_costs(rng)
        if json.dumps((cap, costs), sort_keys=True) in shown:
            continue
        table = _table(costs)
        if _fastest(table, cap) is None:
            continue
        missed = [n for n, m in MISTAKES.items()
                  if design_problem(_fastest(table, cap, m), cap, costs, table)[0] < 1]
        bank.append(((cap, costs), missed))
    return greedy_cover(bank, MISTAKES, count, quota, "choose_design",
                        lambda missed, misses: sum(misses[n] < quota for n in missed))


def visible() -> list[tuple]:
    rng = random.Random(VISIBLE_SEED)
    return [draw_costs(rng) for _ in range(3)]


def score(cases: list, outputs: list) -> tuple[float, str]:
    """(fraction, message): mean credit; the same design for every case scores 0 unless it is right everywhere."""
    judged = [(0.0, f"choose_design gave {out}") if not isinstance(out, dict) or "error" in out or "forbidden" in out
              else design_problem(out, cap, costs) for (cap, costs), out in zip(cases, outputs)]
    fraction = sum(c for c, _ in judged) / len(judged) if judged else 0.0
    if fraction < 1 and len(outputs) >= 3 and len({json.dumps(o, sort_keys=True) for o in outputs}) == 1:
        return 0.0, f"the same design for all {len(outputs)} cases: {str(outputs[0])[:80]}"
    problems = [m for _, m in judged if m]
    return fraction, problems[0] if problems else "the fastest fitting design in every case"
