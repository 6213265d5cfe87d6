"""Export a trace to the Trace Event Format (JSON), to open in Perfetto (ui.perfetto.dev) or ``chrome://tracing``.

    labs.viz.perfetto.save(run.trace, "step.json")   # then drag step.json into https://ui.perfetto.dev
    trace = labs.viz.perfetto.load("step.json")       # the same Trace back (events, messages, counters)

What the file holds (the format's "JSON Object Format": ``{"traceEvents": [...], "displayTimeUnit": "ms"}``):

* one **process per rank**: rank r is ``pid = r + 1`` (never 0), named ``rank r`` and sorted by r
  (``process_name`` and ``process_sort_index`` metadata events);
* in each, named and ordered **tracks** (threads): "compute", one complete slice (``ph: "X"``) per action, named
  like the action (``2F5``), args rank, stage, kind, micro-batch, saved bytes; "sends", one slice per message the
  rank sent, from the send until the receiver had it; "receives", one slice per message it received, from when it
  asked for it until it had it (the wait a slow link or a late producer causes); "all-reduces" when the run had
  tensor- or data-parallel collectives;
* one **flow** per message (``ph: "s"`` inside the producing slice, ``ph: "f"`` with ``bp: "e"`` inside the slice
  that consumes it), drawn as an arrow from the action that sent it to the action that used it;
* the rank totals under ``otherData`` so ``load`` rebuilds the Trace exactly. Times: microseconds from the step's
  start, as the format wants.

Why these ids: Perfetto reads JSON pids and tids as Linux ids (its trace processor's ``ProcessTracker``): pid or tid 0
is the idle "swapper", a tid names one thread in the whole trace, and a thread whose tid equals a pid is that
process's main thread. So a track's ``tid = 10000 * pid + 1000 * track + lane`` (track 0 compute, 1 sends,
2 receives, 3 all-reduces): unique in the file, never 0, never a pid (at most ``MAX_RANKS`` = 64 ranks). Slices on
one track must nest (Perfetto does not draw overlapping slices of one track); overlapping messages go to the next
*lane* of their track ("sends (2)"). ``validate`` checks all of this; ``load`` also reads files of the earlier
export (pid = rank, tids 0 and 1).
"""
from __future__ import annotations

import json

from ..schedules import BACKWARD, FORWARD, INPUT, WEIGHT, Action, backward_kinds, producer
from ..timeline.trace import Event, Message, RankTrace, Trace
from ._trace_rules import problems

__all__ = ["TRACKS", "from_chrome_trace", "load", "pid_of", "save", "tid_of", "to_chrome_trace", "validate"]

_CATEGORY = {FORWARD: "forward", INPUT: "input gradient", WEIGHT: "weight gradient", BACKWARD: "backward"}
_COUNTERS = ("finish_s", "bytes_sent", "bytes_received", "messages_sent", "messages_received", "wait_time_s")
TRACKS = ("compute", "sends", "receives", "all-reduces")  # in display order; the track number is the index
COMPUTE, SENDS, RECEIVES, ALL_REDUCES = range(len(TRACKS))
_LANES = 1000  # lanes per track: tid = 10000 * pid + 1000 * track + lane


def pid_of(rank: int) -> int:
    """The process id of ``rank`` in the file: ``rank + 1`` (pid 0 is Perfetto's idle process)."""
    return rank + 1


def tid_of(rank: int, track: int, lane: int = 0) -> int:
    """The thread id of ``rank``'s ``track`` (0 compute, 1 sends, 2 receives, 3 all-reduces), lane ``lane``."""
    return 10_000 * pid_of(rank) + _LANES * track + lane


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)  # microseconds, to the nanosecond: a shorter file, nothing real lost


def _slice(name, cat, start_s, end_s, rank, track, args) -> dict:
    start, end = _us(start_s), _us(max(end_s, start_s))
    return {"name": name, "cat": cat, "ph": "X", "ts": start, "dur": round(end - start, 3), "pid": pid_of(rank),
            "track": track, "rank": rank, "args": args}


def _lay_out(slices: list[dict]) -> list[dict]:
    """Give each slice a ``tid``: the first lane of its (rank, track) where it overlaps no slice already there."""
    ends: dict = {}  # (rank, track) -> end of the last slice of each lane
    for s in sorted(slices, key=lambda s: (s["ts"], -s["dur"])):
        lanes = ends.setdefault((s.pop("rank"), s["track"]), [])
        lane = next((i for i, end in enumerate(lanes) if end <= s["ts"]), len(lanes))
        if lane >= _LANES:
            raise ValueError(f"more than {_LANES} messages of one rank overlap in time: too many to draw as tracks")
        lanes[lane:lane + 1] = [s["ts"] + s["dur"]]
        s["tid"] = s["pid"] * 10_000 + _LANES * s.pop("track") + lane
    return slices


def to_chrome_trace(trace: Trace, name: str = "pipeline step") -> dict:
    """The trace as a Trace Event Format object (a dict ready for ``json.dump``); times in microseconds."""
    slices: list[dict] = []
    ends = {e.action: e for r in trace.ranks for e in r.events}
    num_stages = 1 + max((a.stage for a in ends), default=0)
    kinds = backward_kinds([[e.action for e in r.events] for r in trace.ranks])  # I or B: who sent each gradient
    for rank in trace.ranks:
        for e in rank.events:
            a = e.action
            slices.append(_slice(str(a), _CATEGORY[a.kind], e.start_s, e.end_s, rank.rank, COMPUTE,
                                 {"rank": rank.rank, "stage": a.stage, "kind": a.kind, "microbatch": a.microbatch,
                                  "saved_bytes": e.saved_bytes}))
        for kind, start_s, end_s, size in rank.collectives:
            slices.append(_slice(f"all-reduce ({kind})", "collective", start_s, end_s, rank.rank, ALL_REDUCES,
                                 {"rank": rank.rank, "kind": kind, "size_bytes": size}))
    flows: list[dict] = []
    for rank in trace.ranks:
        for m in rank.messages:
            label = f"{m.stage}{m.kind}{m.microbatch}"
            args = {"src": m.src, "dst": m.dst, "kind": m.kind, "stage": m.stage, "microbatch": m.microbatch,
                    "size_bytes": m.size_bytes, "sent_us": _us(m.sent_s), "needed_us": _us(m.needed_s),
                    "received_us": _us(m.received_s)}
            slices.append(_slice(f"send {label} to rank {m.dst}", "message", m.sent_s, m.received_s, m.src, SENDS,
                                 {"rank": m.src, **args}))
            slices.append(_slice(f"recv {label} from rank {m.src}", "message", m.needed_s, m.received_s, m.dst,
                                 RECEIVES, {"rank": m.dst, **args}))
            upstream = producer(m.consumer, num_stages, kinds)  # the action whose output the message carries
            sent, used = ends.get(upstream) if upstream else None, ends.get(m.consumer)
            if sent is None or used is None:
                continue
            low, high = _us(sent.start_s), _us(sent.end_s)  # the slice's own numbers, so the arrow binds to it
            start = min(max(_us(m.sent_s), low), high)
            finish = _us(used.start_s) + min(1.0, _us(used.end_s) - _us(used.start_s))
            ident = len(flows) // 2 + 1
            flows += [{"name": f"{m.src}->{m.dst}", "cat": "message", "ph": "s", "id": ident, "ts": start,
                       "pid": pid_of(m.src), "tid": tid_of(m.src, COMPUTE), "args": {"size_bytes": m.size_bytes}},
                      {"name": f"{m.src}->{m.dst}", "cat": "message", "ph": "f", "bp": "e", "id": ident,
                       "ts": finish, "pid": pid_of(m.dst), "tid": tid_of(m.dst, COMPUTE)}]
    slices = _lay_out(slices)
    return {"traceEvents": _metadata(trace, slices) + slices + flows, "displayTimeUnit": "ms",
            "otherData": {"name": name, "producer": "labs (pipeline-parallelism course)", "ids": "pid=rank+1",
                          "ranks": [{"rank": r.rank, **{k: getattr(r, k) for k in _COUNTERS}} for r in trace.ranks]}}


def _metadata(trace: Trace, slices: list[dict]) -> list[dict]:
    """Names and display order: a process per rank, and its tracks (compute, sends and receives always, all-reduces
    when it holds slices), lane by lane."""
    used = {(s["pid"], s["tid"]) for s in slices}
    events: list[dict] = []
    for rank in trace.ranks:
        pid = pid_of(rank.rank)
        events += [{"name": "process_name", "ph": "M", "pid": pid, "tid": tid_of(rank.rank, COMPUTE),
                    "args": {"name": f"rank {rank.rank}"}},
                   {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": tid_of(rank.rank, COMPUTE),
                    "args": {"sort_index": rank.rank}}]
        order = 0
        for track, label in enumerate(TRACKS):
            lane = 0
            while (pid, tid_of(rank.rank, track, lane)) in used or (lane == 0 and track != ALL_REDUCES):
                tid = tid_of(rank.rank, track, lane)
                events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                            "args": {"name": label if lane == 0 else f"{label} ({lane + 1})"}},
                           {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                            "args": {"sort_index": order}}]
                order, lane = order + 1, lane + 1
    return events


def _track_of(event: dict, names: dict) -> str:
    """Which track an exported slice is on: its thread's name (either id scheme), else what the slice is."""
    name = names.get((event["pid"], event.get("tid")), "")
    for label in TRACKS:
        if name.startswith(label):
            return label
    if event.get("cat") in _CATEGORY.values():
        return "compute"
    return {"send": "sends", "recv": "receives", "all-": "all-reduces"}.get(event.get("name", "")[:4], "")


def from_chrome_trace(data: dict) -> Trace:
    """Rebuild a ``Trace`` from ``to_chrome_trace``'s object (or the parsed JSON file).

    Reads this export (pid = rank + 1, a track per thread) and the earlier one (pid = rank, tid 0 compute and tid 1
    receives): the rank of a slice is its ``args.rank``, else its process's name ``rank r``, else its pid."""
    names, process_rank = {}, {}
    for e in data["traceEvents"]:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[(e["pid"], e.get("tid"))] = e["args"]["name"]
        if e.get("ph") == "M" and e.get("name") == "process_name" and e["args"]["name"].startswith("rank "):
            process_rank[e["pid"]] = int(e["args"]["name"][5:])
    counters = {r["rank"]: r for r in data.get("otherData", {}).get("ranks", [])}
    ranks: dict[int, RankTrace] = {r: RankTrace(rank=r) for r in counters}
    for e in data["traceEvents"]:
        if e.get("ph") != "X":
            continue
        args = e.get("args", {})
        r = args.get("rank", process_rank.get(e["pid"], e["pid"]))
        rank = ranks.setdefault(r, RankTrace(rank=r))
        track, start = _track_of(e, names), e["ts"] / 1e6
        if track == "compute":
            action = Action(args["stage"], args["kind"], args["microbatch"])
            rank.events.append(Event(action, start, start + e["dur"] / 1e6, args.get("saved_bytes", 0)))
        elif track == "receives":
            rank.messages.append(Message(args["src"], args["dst"], args["kind"], args["stage"], args["microbatch"],
                                         args.get("size_bytes", args.get("bytes", 0)), args["sent_us"] / 1e6, args["needed_us"] / 1e6,
                                         args["received_us"] / 1e6))
        elif track == "all-reduces":
            rank.collectives.append((args["kind"], start, start + e["dur"] / 1e6, args["size_bytes"]))
    for r, rank in ranks.items():
        rank.events.sort(key=lambda e: e.start_s)
        rank.collectives.sort(key=lambda c: c[1])
        for key in _COUNTERS:
            if key in counters.get(r, {}):
                setattr(rank, key, counters[r][key])
        if "finish_s" not in counters.get(r, {}):
            rank.finish_s = max((e.end_s for e in rank.events), default=0.0)
    return Trace([ranks[r] for r in sorted(ranks)])


def validate(data: dict) -> int:
    """Check ``data`` against the Trace Event Format and what Perfetto's importer relies on; the number of events.

    Raises ValueError naming the first broken rule (``labs.viz._trace_rules.problems`` lists them all): every event
    has the fields its phase requires (complete ``X``: name, ts, dur, pid, tid; metadata ``M``: a known name and
    args; flow ``s``/``f``: cat and id) and times >= 0 in microseconds; every flow id has one start and one finish
    (``bp: "e"``, not before its start), both inside a slice of their own thread; no pid or tid is 0, a tid belongs
    to one process and is no process's pid; each process is named and sorted, each track named and sorted (sort
    indices unique); slices on one track nest (no partial overlap).
    """
    found = problems(data)
    if found:
        raise ValueError(found[0])
    return len(data["traceEvents"])


def save(trace: Trace, path: str, name: str = "pipeline step") -> str:
    """Write the trace to ``path`` as Trace Event Format JSON; returns the path."""
    with open(path, "w") as handle:
        json.dump(to_chrome_trace(trace, name), handle)
    return path


def load(path: str) -> Trace:
    """The Trace saved at ``path`` by ``save`` (this export's ids or the earlier ones)."""
    with open(path) as handle:
        return from_chrome_trace(json.load(handle))
