"""The rules a Trace Event Format file must keep for Perfetto and chrome://tracing to draw it as written.

``problems(data)`` lists every broken rule (empty: the file is fine); ``labs.viz.perfetto.validate`` raises the first.
Two kinds of rule:

* the format's own (its spec, "Trace Event Format", Google, 2016): the fields each phase requires, times in
  microseconds >= 0, metadata events of a known name, a flow's start (``s``) and finish (``f``, ``bp: "e"``) paired
  by id and each inside a slice of its own thread;
* what Perfetto's JSON importer assumes (its trace processor reads pids and tids as Linux ids, ``ProcessTracker``):
  pid and tid 0 are the idle "swapper", so neither may appear; a tid names one thread in the whole trace, so a tid
  may belong to one process only and may not be another process's pid (that would make it that process's main
  thread); slices of one thread must nest, since Perfetto does not draw partly overlapping slices of one track
  (perfetto.dev/docs/faq). And what a reader needs to find the ranks: every process and every thread that holds a
  slice is named and has a sort index, unique among its siblings.
"""
from __future__ import annotations

import json

__all__ = ["problems"]

_REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "M": {"name", "ph", "pid", "args"},
             "s": {"name", "cat", "ph", "ts", "pid", "tid", "id"}, "f": {"name", "cat", "ph", "ts", "pid", "tid", "id"}}
_METADATA = ("process_name", "process_sort_index", "thread_name", "thread_sort_index")


def _ns(microseconds: float) -> int:
    return round(microseconds * 1000)  # Perfetto keeps integer nanoseconds


def _fields(events: list) -> list[str]:
    found = []
    for e in events:
        phase = e.get("ph") if isinstance(e, dict) else None
        if phase not in _REQUIRED:
            found.append(f"unexpected phase {phase!r} in {e}")
            continue
        missing = _REQUIRED[phase] - set(e)
        if missing:
            found.append(f"a {phase!r} event lacks {sorted(missing)}: {e}")
        elif not isinstance(e["pid"], int) or not isinstance(e.get("tid", 0), int):
            found.append(f"pid and tid are integers: {e}")
        elif any(k in e and not (isinstance(e[k], (int, float)) and e[k] >= 0) for k in ("ts", "dur")):
            found.append(f"ts and dur are numbers of microseconds >= 0: {e}")
        elif phase == "M" and e["name"] not in _METADATA:
            found.append(f"unknown metadata event {e['name']!r}")
    return found


def _ids(events: list) -> list[str]:
    """Perfetto's Linux-id reading: no 0, a tid in one process only, no tid that is another process's pid."""
    found = []
    pids = {e["pid"] for e in events}
    owners: dict = {}
    for e in events:
        if "tid" in e:
            owners.setdefault(e["tid"], set()).add(e["pid"])
    if 0 in pids:
        found.append("pid 0 is Perfetto's idle process ('swapper'): number processes from 1")
    if 0 in owners:
        found.append("tid 0 is Perfetto's idle thread ('swapper'): number threads from 1")
    for tid, procs in sorted(owners.items()):
        if len(procs) > 1:
            found.append(f"tid {tid} is used by processes {sorted(procs)}: Perfetto takes a tid for one thread in "
                         f"the whole trace and merges their tracks")
        elif tid in pids and procs != {tid}:
            found.append(f"tid {tid} of process {min(procs)} is the pid of another process: Perfetto would take it "
                         f"for that process's main thread")
    return found


def _names(events: list) -> list[str]:
    """Every process and every thread with slices named and sorted, sort indices unique among siblings."""
    found = []
    meta: dict = {}
    for e in events:
        if e["ph"] == "M":
            key = (e["pid"],) if e["name"].startswith("process") else (e["pid"], e.get("tid"))
            meta.setdefault(e["name"].split("_", 1)[1], {})[key] = e["args"].get("name", e["args"].get("sort_index"))
    processes = sorted({e["pid"] for e in events})
    threads = sorted({(e["pid"], e["tid"]) for e in events if e["ph"] == "X"})
    for kind, keys in (("process", [(p,) for p in processes]), ("thread", threads)):
        for field in ("name", "sort_index"):
            lacking = [k for k in keys if k not in meta.get(field, {})]
            if lacking:
                found.append(f"{kind} {lacking[0]} has no {kind}_{field} metadata event")
    for field, scope in (("sort_index", 1), ("sort_index", 2)):
        seen: dict = {}
        for key, value in meta.get(field, {}).items():
            if len(key) == scope:
                seen.setdefault(key[:-1] if scope == 2 else (), []).append(value)
        for parent, values in seen.items():
            if len(values) != len(set(values)):
                found.append(f"{'processes' if scope == 1 else f'threads of process {parent[0]}'} share a sort "
                             f"index: {sorted(values)}")
    return found


def _nesting(events: list) -> tuple[list[str], dict]:
    """Slices of one thread nest (Perfetto drops or cuts a slice that partly overlaps another on its track)."""
    found, tracks = [], {}
    for e in events:
        if e["ph"] == "X":
            tracks.setdefault((e["pid"], e["tid"]), []).append((_ns(e["ts"]), _ns(e["ts"] + e["dur"]), e["name"]))
    for (pid, tid), slices in tracks.items():
        stack: list = []
        for start, end, name in sorted(slices, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack and end > stack[-1][1]:
                found.append(f"slice {name!r} on process {pid}, thread {tid} starts inside {stack[-1][2]!r} and ends "
                             f"after it: slices of one track must nest")
                break
            stack.append((start, end, name))
    return found, tracks


def _flows(events: list, tracks: dict) -> list[str]:
    found, flows = [], {}
    for e in events:
        if e["ph"] in "sf":
            flows.setdefault(e["id"], []).append(e)
    for ident, points in flows.items():
        if sorted(p["ph"] for p in points) != ["f", "s"]:
            found.append(f"flow {ident} needs one 's' and one 'f' event, got {[p['ph'] for p in points]}")
            continue
        start, finish = sorted(points, key=lambda p: p["ph"] == "f")
        if finish.get("bp") != "e" or finish["ts"] < start["ts"]:
            found.append(f"flow {ident}: its finish binds to the enclosing slice (bp 'e') and is not before its start")
        for p in points:
            if not any(a <= _ns(p["ts"]) <= b for a, b, _ in tracks.get((p["pid"], p["tid"]), [])):
                found.append(f"flow {ident}: its {p['ph']!r} point at {p['ts']} us is inside no slice of process "
                             f"{p['pid']}, thread {p['tid']}")
    return found


def problems(data) -> list[str]:
    """Every rule ``data`` (a parsed Trace Event Format object) breaks, in words; empty when it keeps them all."""
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        return ["a Trace Event Format object has a 'traceEvents' list"]
    if data.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        return [f"displayTimeUnit is 'ms' or 'ns', got {data['displayTimeUnit']!r}"]
    try:
        json.dumps(data)
    except (TypeError, ValueError) as error:
        return [f"not plain JSON: {error}"]
    events = data["traceEvents"]
    found = _fields(events)
    if found:
        return found
    nesting, tracks = _nesting(events)
    return _ids(events) + _names(events) + nesting + _flows(events, tracks)
