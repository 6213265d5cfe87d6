"""Read a trace like a detective: where each rank's time went, which stage or link is slow, what sets the step time.

    rank_times(run.trace)     # per rank: compute_s, wait_s (input not there yet), idle_s (the rest)
    stage_means(run.trace)    # per stage: mean forward / backward seconds
    link_times(run.trace)     # per link (src, dst): messages, bytes, how long they held receivers up
    critical_path(run.trace)  # the chain of actions and messages that sets the step time
    diagnose(run.trace)       # the reference detective: {"cause": ..., "where": ...}

Every function reads only the trace (measured or simulated: the simulator records the same messages the runtime's
transport does), so each can be checked on a simulated timeline whose answer is known. No torch here.

Words used: a rank **waits** while it is blocked receiving an action's input (a trace without message records: the
part of the gap before an action that comes before the producer's end); the rest of the time it does not compute,
including after its last action, it is **idle**. compute + wait + idle = step time, per rank.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from ..schedules import BACKWARD, FORWARD, INPUT, producer
from ..theory import idle_fraction
from .trace import Trace

__all__ = ["CAUSES", "PathStep", "critical_path", "diagnose", "link_times", "path_summary", "rank_times",
           "stage_means"]

EPS = 1e-9
CAUSES = ("healthy", "few micro-batches", "slow stage", "slow rank", "slow link")
_STAGE_FACTOR = 1.2  # the reference's line between a busy machine's spread and a slow stage


def _index(trace: Trace):
    """(event by action, rank by stage, number of stages, message by (dst, consuming action))."""
    events = {e.action: e for r in trace.ranks for e in r.events}
    owners = {a.stage: r.rank for r in trace.ranks for a in (e.action for e in r.events)}
    stages = max(owners) + 1 if owners else 0
    messages = {(m.dst, m.consumer): m for r in trace.ranks for m in r.messages}
    return events, owners, stages, messages


def _tolerance(trace: Trace) -> float:
    """A wait shorter than this is bookkeeping, not waiting (a real receive of a message already there takes tens of
    microseconds): 2% of the median action, at most 0.2 ms."""
    durations = sorted(e.duration_s for r in trace.ranks for e in r.events)
    return min(2e-4, 0.02 * durations[len(durations) // 2]) if durations else EPS


def _input(action, rank: int, free_s: float, events, owners, stages, messages, tolerance: float):
    """(the producing event of the cross-rank input of ``action``, seconds the rank waited for it); (None, 0.0) when
    the action has no input from another rank. With a message record the wait is ``received - needed`` (the time
    the receive blocked); without one, the part of the gap before the action that came before the producer's end."""
    upstream = producer(action, stages)
    if upstream is not None and upstream not in events and upstream.kind in (INPUT, BACKWARD):  # B mixed with I, W
        other = BACKWARD if upstream.kind == INPUT else INPUT
        upstream = producer(action, stages, {(upstream.stage, upstream.microbatch): other})
    if upstream is None or owners.get(upstream.stage) == rank or upstream not in events:
        return None, 0.0
    message = messages.get((rank, action))
    if message is not None:
        waited = message.received_s - message.needed_s
    else:
        waited = min(events[action].start_s, events[upstream].end_s) - free_s
    return events[upstream], (waited if waited > tolerance else 0.0)


def rank_times(trace: Trace) -> list[dict]:
    """Per rank: {"rank", "compute_s", "wait_s", "idle_s", "idle_fraction"}; the seconds add up to the step time."""
    events, owners, stages, messages = _index(trace)
    tolerance = _tolerance(trace)
    step = trace.step_time_s
    out = []
    for r in trace.ranks:
        compute = wait = free = 0.0
        for e in sorted(r.events, key=lambda e: e.start_s):
            wait += _input(e.action, r.rank, free, events, owners, stages, messages, tolerance)[1]
            compute += e.duration_s
            free = e.end_s
        idle = step - compute - wait
        out.append({"rank": r.rank, "compute_s": compute, "wait_s": wait, "idle_s": idle,
                    "idle_fraction": 1.0 - compute / step if step else 0.0})
    return out


def stage_means(trace: Trace) -> dict[int, dict[str, float]]:
    """Per stage: {"F": mean forward seconds, "B": mean backward seconds, ("W": ... when split)}."""
    durations: dict = {}
    for r in trace.ranks:
        for e in r.events:
            durations.setdefault(e.action.stage, {}).setdefault(e.action.kind, []).append(e.duration_s)
    return {stage: {kind: statistics.mean(values) for kind, values in sorted(kinds.items())}
            for stage, kinds in sorted(durations.items())}


def link_times(trace: Trace) -> dict[tuple[int, int], dict]:
    """Per directed link (src rank, dst rank), from the recorded messages:

    * ``messages``, ``bytes``;
    * ``mean_held_up_s``: how long a message kept its receiver waiting after it was both sent and asked for
      (``received - max(sent, needed)``): the link's cost where it shows, 0 where compute hides it;
    * ``mean_in_flight_s``: ``received - sent`` over the messages whose receiver was already waiting when they were
      sent (there it is the link's full cost); None when the receiver never waited;
    * ``min_in_flight_s``: the fastest of those: a slow link makes every message slow, a busy machine only some.
    """
    out: dict = {}
    for r in trace.ranks:
        for m in r.messages:
            entry = out.setdefault((m.src, m.dst), {"messages": 0, "bytes": 0, "_held": [], "_flight": []})
            entry["messages"] += 1
            entry["bytes"] += m.size_bytes
            entry["_held"].append(max(0.0, m.received_s - max(m.sent_s, m.needed_s)))
            if m.needed_s <= m.sent_s + EPS:
                entry["_flight"].append(m.received_s - m.sent_s)
    for entry in out.values():
        held, flight = entry.pop("_held"), entry.pop("_flight")
        entry["mean_held_up_s"] = statistics.mean(held)
        entry["mean_in_flight_s"] = statistics.mean(flight) if flight else None
        entry["min_in_flight_s"] = min(flight) if flight else None
    return dict(sorted(out.items()))


@dataclass
class PathStep:
    """One link of the critical path: an action computing on ``rank``, a message from ``src`` to ``dst``, or a gap
    (the rank had its input but had not started: runtime overhead)."""

    kind: str  # "compute", "message" or "gap"
    label: str  # "2F5", "1->2" or "gap before 2F5"
    start_s: float
    end_s: float
    rank: int | None = None
    src: int | None = None
    dst: int | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def critical_path(trace: Trace) -> list[PathStep]:
    """The chain that sets the step time, first step first: start from the action that ends last and walk back,
    each time to what held it back: its input's message, when the rank waited for it and it could not have been
    there sooner (its producer ended, plus the link's fastest flight, after the rank was free); otherwise the rank's
    previous action, and a late start shows as a gap. A real rank that takes a message long after it was sent (its
    receive thread waiting for a core on a busy machine) waits, but not for the producer. On a simulated trace the
    steps tile the step exactly."""
    events, owners, stages, messages = _index(trace)
    tolerance = _tolerance(trace)
    flights = {link: v["min_in_flight_s"] or 0.0 for link, v in link_times(trace).items()}
    by_rank = {r.rank: sorted(r.events, key=lambda e: e.start_s) for r in trace.ranks}
    current = max(events.values(), key=lambda e: e.end_s, default=None)
    path: list[PathStep] = []
    while current is not None:
        rank = owners[current.action.stage]
        path.append(PathStep("compute", str(current.action), current.start_s, current.end_s, rank=rank))
        ordered = by_rank[rank]
        position = ordered.index(current)
        previous = ordered[position - 1] if position else None
        free = previous.end_s if previous else 0.0
        upstream, waited = _input(current.action, rank, free, events, owners, stages, messages, tolerance)
        src = owners[upstream.action.stage] if upstream is not None else None
        if waited > 0 and (previous is None or upstream.end_s + flights.get((src, rank), 0.0) > free + tolerance):
            # a real producer's recorded end includes posting its send, so its message can be used a little before it
            start = min(upstream.end_s, current.start_s)
            path.append(PathStep("message", f"{src}->{rank}", start, current.start_s, src=src, dst=rank))
            current = upstream
            continue
        if current.start_s - free > tolerance:
            path.append(PathStep("gap", f"gap before {current.action}", free, current.start_s, rank=rank))
        current = previous
    return path[::-1]


def path_summary(path: list[PathStep]) -> dict:
    """Seconds of the path: {"compute_s", "message_s", "gap_s", "by_stage" (compute seconds per stage),
    "by_link" (message seconds per (src, dst) link)}."""
    summary = {"compute_s": 0.0, "message_s": 0.0, "gap_s": 0.0, "by_stage": {}, "by_link": {}}
    for step in path:
        summary[f"{step.kind}_s"] += step.duration_s
        if step.kind == "compute":
            stage = int(re.match(r"\d+", step.label)[0])  # the action's stage: "2I5" -> 2
            summary["by_stage"][stage] = summary["by_stage"].get(stage, 0.0) + step.duration_s
        elif step.kind == "message":
            key = (step.src, step.dst)
            summary["by_link"][key] = summary["by_link"].get(key, 0.0) + step.duration_s
    return summary


def diagnose(trace: Trace) -> dict:
    """The reference detective: {"cause": one of CAUSES, "where": a stage, a rank, a [rank, rank] link, or None}.

    In this order (the one to fix first): a slow link (every message on one cable, both ways, slow against the
    pipeline's own forward time, where a busy machine delays only some); a slow rank (every stage it holds slower
    than the median stage) or a slow stage; too few micro-batches (idle near (P-1)/(vM+P-1), and that is large);
    otherwise healthy. Times are compared with the trace's own, never with fixed milliseconds.
    """
    means = stage_means(trace)
    forward = statistics.mean(m[FORWARD] for m in means.values())
    fastest: dict = {}  # per cable (both directions): the fastest message whose receiver was waiting for it
    for (src, dst), v in link_times(trace).items():
        if v["min_in_flight_s"] is not None:
            cable = (min(src, dst), max(src, dst))
            fastest[cable] = min(fastest.get(cable, v["min_in_flight_s"]), v["min_in_flight_s"])
    if fastest:
        cable = max(fastest, key=fastest.get)
        if fastest[cable] > 0.25 * forward:
            return {"cause": "slow link", "where": list(cable)}
    totals = {stage: sum(m.values()) for stage, m in means.items()}
    median = statistics.median(totals.values())
    slow = {stage for stage, total in totals.items() if total > _STAGE_FACTOR * median}
    if slow:
        owner = {e.action.stage: r.rank for r in trace.ranks for e in r.events}
        for rank in sorted({owner[s] for s in slow}):
            held = {s for s in totals if owner[s] == rank}
            if len(held) > 1 and held <= slow:
                return {"cause": "slow rank", "where": rank}
        return {"cause": "slow stage", "where": max(slow, key=totals.get)}
    P = trace.world_size
    v = len(means) // P
    M = max(e.action.microbatch for r in trace.ranks for e in r.events) + 1
    theory = idle_fraction(P, M, v)
    if theory > 0.3 and abs(trace.idle_fraction - theory) < 0.1:
        return {"cause": "few micro-batches", "where": None}
    return {"cause": "healthy", "where": None}
