"""Export a trace to the Trace Event Format (JSON), to open in Perfetto (ui.perfetto.dev) or ``chrome://tracing``.

    labs.viz.perfetto.save(run.trace, "step.json")   # then drag step.json into https://ui.perfetto.dev
    trace = labs.viz.perfetto.load("step.json")       # the same Trace back (events, messages, counters)

What the file holds (the format's "JSON Object Format": ``{"traceEvents": [...], "displayTimeUnit": "ms"}``):

* one **process per rank** (``pid`` = rank, named ``rank r`` by a ``process_name`` metadata event), with two threads:
  ``tid 0`` "compute" holds **one complete slice (``ph: "X"``) per action**, named like the action (``2F5``), with
  ``args`` stage, kind, micro-batch and saved bytes; ``tid 1`` "receives" holds one slice per received message, from
  when the rank asked for it to when it had it (the wait a slow link or a late producer causes);
* one **flow** per message (``ph: "s"`` inside the producing slice, ``ph: "f"`` with ``bp: "e"`` inside the slice
  that consumes it), drawn as an arrow from the action that sent it to the action that used it;
* the rank totals (finish, bytes and messages sent and received, wait time) under ``otherData`` so ``load`` rebuilds
  the Trace exactly. Times are microseconds from the step's start, as the format wants.
"""
from __future__ import annotations

import json

from ..schedules import BACKWARD, FORWARD, INPUT, WEIGHT, Action, backward_kinds, producer
from ..timeline.trace import Event, Message, RankTrace, Trace

__all__ = ["from_chrome_trace", "load", "save", "to_chrome_trace", "validate"]

_CATEGORY = {FORWARD: "forward", INPUT: "input gradient", WEIGHT: "weight gradient", BACKWARD: "backward"}
_COUNTERS = ("finish_s", "bytes_sent", "bytes_received", "messages_sent", "messages_received", "wait_time_s")
COMPUTE, RECEIVES = 0, 1  # thread ids inside each rank's process


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)  # microseconds, to the nanosecond: a shorter file, nothing real lost


def to_chrome_trace(trace: Trace, name: str = "pipeline step") -> dict:
    """The trace as a Trace Event Format object (a dict ready for ``json.dump``); times in microseconds."""
    events: list[dict] = []
    ends = {e.action: e for r in trace.ranks for e in r.events}
    num_stages = 1 + max((a.stage for a in ends), default=0)
    kinds = backward_kinds([[e.action for e in r.events] for r in trace.ranks])  # I or B: who sent each gradient
    for rank in trace.ranks:
        pid = rank.rank
        events += [{"name": "process_name", "ph": "M", "pid": pid, "tid": COMPUTE, "args": {"name": f"rank {pid}"}},
                   {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": COMPUTE, "args": {"sort_index": pid}},
                   {"name": "thread_name", "ph": "M", "pid": pid, "tid": COMPUTE, "args": {"name": "compute"}},
                   {"name": "thread_name", "ph": "M", "pid": pid, "tid": RECEIVES, "args": {"name": "receives"}}]
        for e in rank.events:
            a = e.action
            events.append({"name": str(a), "cat": _CATEGORY[a.kind], "ph": "X", "ts": _us(e.start_s),
                           "dur": _us(e.duration_s), "pid": pid, "tid": COMPUTE,
                           "args": {"stage": a.stage, "kind": a.kind, "microbatch": a.microbatch,
                                    "saved_bytes": e.saved_bytes}})
    flow_id = 0
    for rank in trace.ranks:
        for m in rank.messages:
            label = f"{m.stage}{m.kind}{m.microbatch}"
            args = {"src": m.src, "dst": m.dst, "kind": m.kind, "stage": m.stage, "microbatch": m.microbatch,
                    "size_bytes": m.size_bytes, "sent_us": _us(m.sent_s), "needed_us": _us(m.needed_s),
                    "received_us": _us(m.received_s)}
            events.append({"name": f"recv {label} from rank {m.src}", "cat": "message", "ph": "X",
                           "ts": _us(m.needed_s), "dur": _us(max(m.received_s - m.needed_s, 0.0)), "pid": m.dst,
                           "tid": RECEIVES, "args": args})
            upstream = producer(m.consumer, num_stages, kinds)  # the action whose output the message carries
            sent, used = ends.get(upstream) if upstream else None, ends.get(m.consumer)
            if sent is None or used is None:
                continue
            flow_id += 1
            low, high = _us(sent.start_s), _us(sent.start_s) + _us(sent.duration_s)  # the slice's own numbers
            high = min(high, _us(sent.end_s))
            start = min(max(_us(m.sent_s), low), high)  # inside the producing slice, so the arrow binds to it
            events.append({"name": f"{m.src}->{m.dst}", "cat": "message", "ph": "s", "id": flow_id,
                           "ts": start, "pid": m.src, "tid": COMPUTE, "args": {"size_bytes": m.size_bytes}})
            events.append({"name": f"{m.src}->{m.dst}", "cat": "message", "ph": "f", "bp": "e", "id": flow_id,
                           "ts": _us(used.start_s) + min(1.0, _us(used.duration_s)), "pid": m.dst, "tid": COMPUTE,
                           "args": {"size_bytes": m.size_bytes}})
    ranks = [{"rank": r.rank, **{k: getattr(r, k) for k in _COUNTERS}} for r in trace.ranks]
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"name": name, "producer": "labs (pipeline-parallelism course)", "ranks": ranks}}


def from_chrome_trace(data: dict) -> Trace:
    """Rebuild a ``Trace`` from ``to_chrome_trace``'s object (or the parsed JSON file)."""
    counters = {r["rank"]: r for r in data.get("otherData", {}).get("ranks", [])}
    pids = sorted({e["pid"] for e in data["traceEvents"] if e.get("ph") == "X"} | set(counters))
    ranks = {pid: RankTrace(rank=pid) for pid in pids}
    for e in data["traceEvents"]:
        if e.get("ph") != "X":
            continue
        args = e.get("args", {})
        if e.get("tid") == COMPUTE:
            action = Action(args["stage"], args["kind"], args["microbatch"])
            start = e["ts"] / 1e6
            ranks[e["pid"]].events.append(Event(action, start, start + e["dur"] / 1e6, args.get("saved_bytes", 0)))
        elif e.get("tid") == RECEIVES:
            ranks[e["pid"]].messages.append(Message(args["src"], args["dst"], args["kind"], args["stage"],
                                                    args["microbatch"], args["size_bytes"], args["sent_us"] / 1e6,
                                                    args["needed_us"] / 1e6, args["received_us"] / 1e6))
    for pid, rank in ranks.items():
        rank.events.sort(key=lambda e: e.start_s)
        for key in _COUNTERS:
            if key in counters.get(pid, {}):
                setattr(rank, key, counters[pid][key])
        if "finish_s" not in counters.get(pid, {}):
            rank.finish_s = max((e.end_s for e in rank.events), default=0.0)
    return Trace([ranks[pid] for pid in pids])


_REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "M": {"name", "ph", "pid", "args"},
             "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"}, "f": {"name", "cat", "ph", "ts", "pid", "tid", "id"}}
_METADATA = ("process_name", "process_sort_index", "thread_name", "thread_sort_index")


def validate(data: dict) -> int:
    """Check ``data`` against the Trace Event Format's documented fields (JSON Object Format); the number of events.

    Raises ValueError naming the first event that breaks a rule: every event has the fields its phase requires
    (complete ``X``: name, ts, dur, pid, tid; metadata ``M``: a known name and args; flow ``s``/``f``: cat and id);
    times are numbers >= 0 in microseconds; every flow id has one start and one finish, the finish binds to its
    enclosing slice (``bp: "e"``), is not earlier than its start, and both lie inside a slice of their own thread.
    """
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError("a Trace Event Format object has a 'traceEvents' list")
    if data.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        raise ValueError(f"displayTimeUnit is 'ms' or 'ns', got {data['displayTimeUnit']!r}")
    json.dumps(data)  # plain JSON: a TypeError here names what is not
    slices: dict = {}
    flows: dict = {}
    for e in data["traceEvents"]:
        phase = e.get("ph")
        if phase not in _REQUIRED:
            raise ValueError(f"unexpected phase {phase!r} in {e}")
        missing = _REQUIRED[phase] - set(e)
        if missing:
            raise ValueError(f"a {phase!r} event lacks {sorted(missing)}: {e}")
        if not isinstance(e["pid"], int) or not isinstance(e.get("tid", 0), int):
            raise ValueError(f"pid and tid are integers: {e}")
        for key in ("ts", "dur"):
            if key in e and not (isinstance(e[key], (int, float)) and e[key] >= 0):
                raise ValueError(f"{key} is a number of microseconds >= 0: {e}")
        if phase == "M" and e["name"] not in _METADATA:
            raise ValueError(f"unknown metadata event {e['name']!r}")
        if phase == "X":
            slices.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
        if phase in "sf":
            flows.setdefault(e["id"], []).append(e)
    for ident, points in flows.items():
        if sorted(p["ph"] for p in points) != ["f", "s"]:
            raise ValueError(f"flow {ident} needs one 's' and one 'f' event, got {[p['ph'] for p in points]}")
        start, finish = sorted(points, key=lambda p: p["ph"] == "f")
        if finish.get("bp") != "e" or finish["ts"] < start["ts"]:
            raise ValueError(f"flow {ident}: its finish binds to the enclosing slice (bp 'e') and is not before "
                             f"its start")
        for p in points:
            if not any(a <= p["ts"] <= b for a, b in slices.get((p["pid"], p["tid"]), [])):
                raise ValueError(f"flow {ident}: its {p['ph']!r} point at {p['ts']} us is inside no slice of "
                                 f"rank {p['pid']}, thread {p['tid']}")
    return len(data["traceEvents"])


def save(trace: Trace, path: str, name: str = "pipeline step") -> str:
    """Write the trace to ``path`` as Trace Event Format JSON; returns the path."""
    with open(path, "w") as handle:
        json.dump(to_chrome_trace(trace, name), handle)
    return path


def load(path: str) -> Trace:
    """The Trace saved at ``path`` by ``save``."""
    with open(path) as handle:
        return from_chrome_trace(json.load(handle))
