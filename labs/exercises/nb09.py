"""Notebook 09 (the bubble detective): checks and graded score of ``diagnose``.

``diagnose(trace)`` -> ``{"cause": ..., "where": ...}``: cause one of ``labs.timeline.analysis.CAUSES`` ("healthy",
"few micro-batches", "slow stage", "slow link"); where the slow stage's number, the slow link's two ranks as a
sorted list, or None. Judged on traces the function has never seen: pipelines simulated in the grader's process with
a cause injected at random (P, M, schedule, costs, which stage or link, how slow), each kept only when the injected
cause is unambiguous (the reference detective agrees with it). A trace crosses to the kernel as Trace Event Format
JSON (``labs.viz.perfetto``) and is rebuilt there into a ``labs.Trace``. Full marks for a case: cause and where
right; half: the cause alone.
"""
from __future__ import annotations

import random

from labs.exercises._common import check, exercise, fraction_of_cases
from labs.grading import Graded
from labs.schedules import gpipe, one_f_one_b
from labs.timeline import Costs, Link, Network, analysis, simulate
from labs.viz.perfetto import from_chrome_trace, to_chrome_trace

__all__ = ["GRADED", "REFERENCE", "check_diagnose", "make_trace", "run_diagnose", "score", "visible_problem"]

REFERENCE = "labs.timeline.analysis.diagnose"


def run_diagnose(fn, trace_json, *_):
    """Kernel side: rebuild the trace from its JSON and ask the learner's detective."""
    return fn(from_chrome_trace(trace_json))


def make_trace(rng: random.Random, cause: str):
    """A simulated trace with ``cause`` injected; returns (trace, expected answer)."""
    P = rng.randint(3, 6)
    F = rng.uniform(0.005, 0.03)
    forward = [F * rng.uniform(0.95, 1.05) for _ in range(P)]
    backward = [f * rng.uniform(1.6, 2.4) for f in forward]
    M = rng.randint(2 * P, 3 * P)
    slow: dict = {}
    where = None
    if cause == "healthy":
        M = rng.randint(4 * P, 5 * P)
    elif cause == "few micro-batches":
        M = rng.choice([1, 2])
    elif cause == "slow stage":
        where = rng.randrange(P)
        factor = rng.uniform(1.8, 3.5)
        forward[where] *= factor
        backward[where] *= factor
    elif cause == "slow link":
        a = rng.randrange(P - 1)
        where = [a, a + 1]
        slow = {(a, a + 1): Link(latency_ms=1000 * F * rng.uniform(0.7, 2.5))}
    schedule = (one_f_one_b if cause == "slow link" or rng.random() < 0.6 else gpipe)(P, M)
    network = Network(Link(latency_ms=1000 * F * rng.uniform(0.0, 0.04)), slow)
    trace = simulate(schedule, Costs(forward, backward, network=network, message_bytes=4 * 64 * rng.choice([4, 8, 16])))
    return trace, {"cause": cause, "where": where}


def _draw(rng: random.Random, count: int) -> list[tuple]:
    """``count`` cases (trace JSON, expected), the causes in turn, each unambiguous."""
    cases = []
    while len(cases) < count:
        cause = analysis.CAUSES[len(cases) % len(analysis.CAUSES)]
        trace, expected = make_trace(rng, cause)
        if analysis.diagnose(trace) == expected:
            cases.append((to_chrome_trace(trace, name="mystery"), expected))
    return cases


def _judge(expected: dict, got) -> tuple[float, str | None]:
    if not isinstance(got, dict) or "cause" not in got:
        return 0.0, f"returned {str(got)[:80]}, expected a dict with 'cause' and 'where'"
    if got.get("cause") != expected["cause"]:
        return 0.0, f"said {got.get('cause')!r}, the trace's cause is {expected['cause']!r}"
    if got.get("where") != expected["where"]:
        return 0.5, (f"found the cause ({expected['cause']}) but said where={got.get('where')!r}, expected "
                     f"{expected['where']!r}")
    return 1.0, None


def _describe(trace_json) -> str:
    ranks = len(trace_json.get("otherData", {}).get("ranks", []))
    slices = [e for e in trace_json["traceEvents"] if e.get("ph") == "X" and e.get("tid") == 0]
    micro = max(e["args"]["microbatch"] for e in slices) + 1
    return f"diagnose(a {ranks}-rank trace with {micro} micro-batches)"


_VISIBLE = _draw(random.Random(9), 8)
_VISIBLE_EXPECTED = {i: expected for i, (_, expected) in enumerate(_VISIBLE)}


@exercise("diagnose")
def visible_problem(case, got) -> str | None:
    trace_json, index = case
    fraction, message = _judge(_VISIBLE_EXPECTED[index], got)
    return None if fraction == 1.0 else f"{_describe(trace_json)} {message}"


def check_diagnose(fn) -> bool:
    cases = [(trace_json, i) for i, (trace_json, _) in enumerate(_VISIBLE)]
    return check(fn, cases, visible_problem, "diagnose", REFERENCE, forbidden=(REFERENCE,), call=run_diagnose,
                 passed=f"diagnose: all {len(cases)} simulated mysteries solved, two of each cause, cause and "
                        f"where -> correct")


def _cases(rng) -> list[tuple]:
    return [(trace_json,) for trace_json, _ in _draw(rng, 16)]


def score(cases, outputs) -> tuple[float, str]:
    """Per case: 1 for cause and where, 0.5 for the cause alone; the expected answer recomputed here."""
    total, problems = 0.0, []
    for (trace_json,), output in zip(cases, outputs):
        expected = analysis.diagnose(from_chrome_trace(trace_json))
        fraction, message = _judge(expected, output)
        if isinstance(output, dict) and len(output) == 1 and ("error" in output or "not_implemented" in output
                                                             or "forbidden" in output):
            fraction, message = 0.0, f"raised or refused: {output}"
        total += fraction
        if message:
            problems.append(f"{_describe(trace_json)} {message}")
    _, text = fraction_of_cases(problems, len(cases), "traces")
    return total / len(cases), text


GRADED = [Graded(name="diagnose", points=3, cases=_cases, score=score, run="labs.exercises.nb09:run_diagnose",
                 forbidden=(REFERENCE,))]
