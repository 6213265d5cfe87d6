"""Notebook 09 (the bubble detective): checks and graded score of ``diagnose``, judged on twin traces.

``diagnose(trace)`` -> ``{"cause": ..., "where": ...}``: cause one of ``labs.timeline.analysis.CAUSES`` ("healthy",
"few micro-batches", "slow stage", "slow rank", "slow link"); where the slow stage's number, the slow rank, the slow
link's two ranks as a sorted list, or None.

Every graded case is one trace of a **pair** drawn from the same P, M, schedule and time scale, the two differing in
one thing only (``TWINS``):

* A. a slow stage against a slow rank (both chunks of one rank), interleaved with v = 2;
* B. a slow link against a busy machine (the same delays on a random 30% of all messages: healthy);
* C. a mildly slow stage (1.30-1.38x) against the same +-20% per-action jitter without it (healthy);
* D. too few micro-batches against a slow link at M = 3P tuned to about the same idle share.

A forward takes 1 to 100 ms (so thresholds in milliseconds fail). A pair earns the smaller of its two traces' credits
(1: cause and where; 0.5: the cause alone), so a detective that says the same thing for both twins earns nothing for
the pair. Pairs are kept only when the reference detective (``labs.timeline.analysis.diagnose``) finds both injected
causes, and the grader recomputes the expected answers from the traces. A trace crosses to the kernel as Trace Event
Format JSON (``labs.viz.perfetto``) and is rebuilt there into a ``labs.Trace``.
"""
from __future__ import annotations

import random
import statistics

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, fraction_of_cases
from labs.grading import Graded
from labs.schedules import interleaved, one_f_one_b
from labs.timeline import Link, Network, analysis, simulate
from labs.timeline.noise import BusyNetwork, JitterCosts
from labs.viz.perfetto import from_chrome_trace, to_chrome_trace

__all__ = ["GRADED", "REFERENCE", "TWINS", "check_diagnose", "draw_pairs", "largest_share", "messages_under", "mostly_on",
           "quietest_path", "run_diagnose", "same_timing", "score", "visible_problem"]

REFERENCE = "labs.timeline.analysis.diagnose"
FORBIDDEN = (REFERENCE, "labs.exercises.nb09.draw_pairs")


def run_diagnose(fn, trace_json, *_):
    """Kernel side: rebuild the trace from its JSON and ask the learner's detective."""
    return fn(from_chrome_trace(trace_json))


# ---------------------------------------------------------------- the twins
def _base(rng):
    return rng.randint(3, 6), 10 ** rng.uniform(-3, -1)  # P, a forward of 1 ... 100 ms


def _costs(rng, stages, F, slow=(), factor=1.0, spread=0.0, network=None):
    forward = [F * rng.uniform(0.97, 1.03) for _ in range(stages)]
    backward = [f * rng.uniform(1.9, 2.1) for f in forward]
    for s in slow:
        forward[s] *= factor
        backward[s] *= factor
    return JitterCosts(forward, backward, network=network, message_bytes=4096, spread=spread,
                       seed=rng.randrange(10 ** 6))


def _lan(rng, F):
    return Network(Link(latency_ms=1000 * F * rng.uniform(0, 0.04)))


def twin_a(rng):
    """A slow stage against a slow rank, interleaved v = 2."""
    P, F = _base(rng)
    M, rank, factor = P * rng.randint(2, 3), rng.randrange(P), rng.uniform(1.6, 2.5)
    stage, net, seed = rank + P * rng.randrange(2), _lan(rng, F), rng.randrange(10 ** 6)
    schedule = interleaved(P, M, 2)
    a = simulate(schedule, _costs(random.Random(seed), 2 * P, F, [stage], factor, network=net))
    b = simulate(schedule, _costs(random.Random(seed), 2 * P, F, [rank, rank + P], factor, network=net))
    return (a, {"cause": "slow stage", "where": stage}), (b, {"cause": "slow rank", "where": rank})


def twin_b(rng):
    """A slow link against a busy machine (30% of all messages late by as much)."""
    P, F = _base(rng)
    M, a, late = rng.randint(4 * P, 5 * P), rng.randrange(P - 1), F * rng.uniform(0.5, 1.2)
    base = Link(latency_ms=1000 * F * rng.uniform(0, 0.04))
    slow = Network(base, {(a, a + 1): Link(latency_ms=base.latency_ms + 1000 * late)})
    busy = BusyNetwork(base, 0.3, (0.8 * late, 1.2 * late), rng.randrange(10 ** 6))
    seed = rng.randrange(10 ** 6)
    x = simulate(one_f_one_b(P, M), _costs(random.Random(seed), P, F, network=slow))
    y = simulate(one_f_one_b(P, M), _costs(random.Random(seed), P, F, network=busy))
    return (x, {"cause": "slow link", "where": [a, a + 1]}), (y, {"cause": "healthy", "where": None})


def twin_c(rng):
    """A stage 1.30-1.38x slower against the same +-20% jitter on every action without it."""
    P, F = _base(rng)
    M, stage, factor = rng.randint(4 * P, 5 * P), rng.randrange(P), rng.uniform(1.3, 1.38)
    net, seed = _lan(rng, F), rng.randrange(10 ** 6)
    x = simulate(one_f_one_b(P, M), _costs(random.Random(seed), P, F, [stage], factor, spread=0.2, network=net))
    y = simulate(one_f_one_b(P, M), _costs(random.Random(seed), P, F, spread=0.2, network=net))
    return (x, {"cause": "slow stage", "where": stage}), (y, {"cause": "healthy", "where": None})


def twin_d(rng):
    """One or two micro-batches against a slow link at M = 3P with about the same idle share."""
    P, F = _base(rng)
    few, a, net, seed = rng.choice([1, 2]), rng.randrange(P - 1), _lan(rng, F), rng.randrange(10 ** 6)
    x = simulate(one_f_one_b(P, few), _costs(random.Random(seed), P, F, network=net))
    best = None
    for quarter in range(1, 41):
        slow = Network(net.default, {(a, a + 1): Link(latency_ms=net.default.latency_ms + 250 * F * quarter)})
        y = simulate(one_f_one_b(P, 3 * P), _costs(random.Random(seed), P, F, network=slow))
        if best is None or abs(y.idle_fraction - x.idle_fraction) < abs(best.idle_fraction - x.idle_fraction):
            best = y
    return (x, {"cause": "few micro-batches", "where": None}), (best, {"cause": "slow link", "where": [a, a + 1]})


TWINS = {"A": twin_a, "B": twin_b, "C": twin_c, "D": twin_d}


def _look_alike(kind: str, pair) -> bool:
    """Whether the two traces of a pair are as alike as the kind promises: B's busy machine makes some cable's *mean*
    message time look slow; C's slow stage stays under 1.4x the median stage; D's idle shares differ by < 0.05."""
    (x, _), (y, _) = pair
    if kind == "B":
        forward = statistics.mean(m["F"] for m in analysis.stage_means(y).values())
        means = [v["mean_in_flight_s"] for v in analysis.link_times(y).values() if v["mean_in_flight_s"]]
        return bool(means) and max(means) > 0.25 * forward
    if kind == "C":
        totals = [sum(m.values()) for m in analysis.stage_means(x).values()]
        return max(totals) < 1.4 * statistics.median(totals)
    if kind == "D":
        return abs(x.idle_fraction - y.idle_fraction) < 0.05
    return True


def draw_pairs(rng: random.Random, per_kind: int) -> list[tuple]:
    """[(trace JSON, pair id, expected)], ``per_kind`` pairs of each kind of twin, each pair kept only when its two
    traces look alike (``_look_alike``) and the reference detective finds both injected causes on the traces as the
    kernel will see them (after the JSON)."""
    out = []
    for kind, make in TWINS.items():
        kept = 0
        while kept < per_kind:
            pair = make(rng)
            if not _look_alike(kind, pair):
                continue
            shown = [(to_chrome_trace(trace, name="mystery"), expected) for trace, expected in pair]
            if all(analysis.diagnose(from_chrome_trace(j)) == expected for j, expected in shown):
                out += [(j, f"{kind}{kept}", expected) for j, expected in shown]
                kept += 1
    return out


# ---------------------------------------------------------------- judging
def _judge(expected: dict, got) -> tuple[float, str | None]:
    if not isinstance(got, dict) or "cause" not in got:
        return 0.0, f"returned {str(got)[:80]}, expected a dict with 'cause' and 'where'"
    if got.get("cause") != expected["cause"]:
        return 0.0, f"said {got.get('cause')!r}, the trace's cause is {expected['cause']!r}"
    if got.get("where") != expected["where"]:
        return 0.5, (f"found the cause ({expected['cause']}) but said where={got.get('where')!r}, expected "
                     f"{expected['where']!r}")
    return 1.0, None


def _describe(trace_json, pair: str) -> str:
    trace = from_chrome_trace(trace_json)
    stages = {e.action.stage for events in trace.events for e in events}
    micro = 1 + max(e.action.microbatch for events in trace.events for e in events)
    v = len(stages) // trace.world_size
    return f"diagnose(pair {pair}: a {trace.world_size}-rank trace, {micro} micro-batches{f', v={v}' if v > 1 else ''})"


_VISIBLE: list = []  # one pair of each kind, drawn on first use


def _visible() -> list:
    if not _VISIBLE:
        _VISIBLE.extend(draw_pairs(random.Random(9), 1))
    return _VISIBLE


@exercise("diagnose")
def visible_problem(case, got) -> str | None:
    trace_json, index = case
    _, pair, expected = _visible()[index]
    fraction, message = _judge(expected, got)
    return None if fraction == 1.0 else f"{_describe(trace_json, pair)} {message}"


def check_diagnose(fn) -> bool:
    cases = [(trace_json, i) for i, (trace_json, _, _) in enumerate(_visible())]
    return check(fn, cases, visible_problem, "diagnose", REFERENCE, forbidden=FORBIDDEN, call=run_diagnose,
                 passed=f"diagnose: all {len(cases) // 2} pairs of look-alike traces told apart ({len(cases)} "
                        f"traces: slow stage or slow rank, slow link or busy machine, mildly slow stage or jitter, "
                        f"few micro-batches or slow link) -> correct")


def _cases(rng) -> list[tuple]:
    return [(trace_json, pair) for trace_json, pair, _ in draw_pairs(rng, 2)]


def score(cases, outputs) -> tuple[float, str]:
    """Per pair: the smaller credit of its two traces (1 for cause and where, 0.5 for the cause alone); the expected
    answers recomputed here by the reference detective."""
    pairs: dict = {}
    problems = []
    for (trace_json, pair), output in zip(cases, outputs):
        expected = analysis.diagnose(from_chrome_trace(trace_json))
        fraction, message = _judge(expected, output)
        if isinstance(output, dict) and len(output) == 1 and ("error" in output or "not_implemented" in output
                                                             or "forbidden" in output):
            fraction, message = 0.0, f"raised or refused: {output}"
        pairs.setdefault(pair, []).append(fraction)
        if message:
            problems.append(f"{_describe(trace_json, pair)} {message}")
    _, text = fraction_of_cases(problems, len(cases), "traces")
    total = sum(min(credits) for credits in pairs.values()) / len(pairs) if pairs else 0.0
    told = sum(min(credits) == 1.0 for credits in pairs.values())
    return total, f"{told} of {len(pairs)} pairs of look-alike traces told apart; {text}"


GRADED = [Graded(name="diagnose", points=3, cases=_cases, score=score, run="labs.exercises.nb09:run_diagnose",
                 forbidden=FORBIDDEN)]


# ---------------------------------------------------------------- the notebook's verdicts
@verdict(holds=[case(0.007, 0.680), case(0.003, 0.300)],
         fails=[case(0.323, 0.997, why="mystery C: a 40 ms link on the critical path"),
                case(0.094, 1.299, why="mystery B: the messages around the slow stage (7%)")])
def messages_under(message_s: float, step_s: float, share: float = 0.05) -> bool:
    """The critical path's message seconds below ``share`` of the step: the step is set by compute."""
    return message_s < share * step_s


def quietest_path(run) -> tuple[dict, float]:
    """(``analysis.path_summary`` of its critical path, step time in s) of the timed step (``run.step_traces``)
    whose critical path spends the smallest share of the step on messages. Load on the machine only ever makes a
    message's receiver late to take it (its receive thread or the rank itself waits for a core), never early, so a
    busy step's path can show milliseconds of "message" that the pipeline does not have; the smallest share over the
    steps is the least disturbed reading."""
    traces = getattr(run, "step_traces", None) or [run.trace]
    summaries = [(analysis.path_summary(analysis.critical_path(t)), t.step_time_s) for t in traces]
    return min(summaries, key=lambda pair: pair[0]["message_s"] / pair[1])


@verdict(holds=[case({0: 0.122, 1: 0.958, 2: 0.061, 3: 0.061}, 1)],
         fails=[case({0: 0.122, 1: 0.184, 2: 0.245, 3: 0.122}, 1, why="a healthy pipeline's shares: no stage stands out"),
                case({0: 0.122, 1: 0.958, 2: 0.061, 3: 0.061}, 2, why="the wrong stage named")])
def largest_share(by_stage: dict, stage: int, over: float = 2.0) -> bool:
    """``stage`` holds the largest share of the critical path's compute ({stage: seconds}), ``over`` x the next."""
    others = [seconds for s, seconds in by_stage.items() if s != stage]
    return stage in by_stage and by_stage[stage] > over * max(others, default=0.0)


def _two_traces():
    from labs.schedules import gpipe
    from labs.timeline import Costs
    return simulate(gpipe(4, 8), Costs(0.02, 0.04)), simulate(gpipe(4, 8), Costs(0.02, 0.04, link_s=0.001))


@verdict(holds=lambda: [case(_two_traces()[0], _two_traces()[0])],
         fails=lambda: [case(*_two_traces(), why="a trace whose every message took 1 ms longer")])
def same_timing(trace, other, tolerance_s: float = 1e-6) -> bool:
    """Two traces with the same step time and the same idle share on every rank (within ``tolerance_s``)."""
    return (abs(trace.step_time_s - other.step_time_s) <= tolerance_s and len(trace.ranks) == len(other.ranks)
            and all(abs(a - b) <= tolerance_s for a, b in zip(trace.idle_fractions, other.idle_fractions)))


@verdict(holds=[case({(2, 3): 0.161, (3, 2): 0.160, (0, 1): 0.001}, (2, 3))],
         fails=[case({(0, 1): 0.090, (1, 0): 0.004}, (2, 3), why="mystery B's path: no message on link 2-3"),
                case({(2, 3): 0.161, (3, 2): 0.160, (0, 1): 0.001}, (0, 1), why="the wrong link named")])
def mostly_on(by_link: dict, cable: tuple, share: float = 0.5) -> bool:
    """More than ``share`` of the critical path's message seconds ({(src, dst): seconds}) crossed ``cable`` (either
    direction)."""
    a, b = cable
    total = sum(by_link.values())
    return total > 0 and by_link.get((a, b), 0.0) + by_link.get((b, a), 0.0) > share * total
