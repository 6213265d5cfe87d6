"""The Perfetto export as viewers read it: one process per rank with stable ordered ids, named tracks, nesting slices.

The rules Perfetto's importer relies on are checked here without any tool (always run); the same files are then
opened in Catapult's trace viewer (the one behind chrome://tracing) in headless Chromium when CATAPULT and Chromium
are installed (tools/trace_viewer_check.py), and that test is skipped otherwise.
"""
import copy
import json

import pytest

import labs
from labs.timeline import Costs, Link, Network, RankTrace, Trace, simulate
from labs.viz._trace_rules import problems
from labs.viz.perfetto import TRACKS, from_chrome_trace, load, pid_of, save, tid_of, to_chrome_trace, validate
from tools import trace_viewer_check as viewer

P, M = 4, 4


def _one_f_one_b():
    return simulate(labs.one_f_one_b(P, M), Costs(0.01, 0.02, network=Network(Link(0.5), {(1, 2): Link(3)}),
                                                  message_bytes=4096))


def _gpipe_slow_stage():
    """Stage 2 three times slower: rank 1's forwards queue up, so several of its sends are in flight at once."""
    return simulate(labs.gpipe(P, 8), Costs([1, 1, 3, 1], [2, 2, 6, 2]))


def _with_all_reduces():
    trace = _one_f_one_b()
    for r in trace.ranks:
        r.collectives = [("dp", trace.step_time_s, trace.step_time_s + 0.004, 1024)]
    return trace


def _old_ids(data: dict) -> dict:
    """The earlier export's ids, for the negative controls and for load: pid = rank, tid 0 compute, tid 1 receives,
    no sends track, no thread sort index, no rank in the args."""
    old = copy.deepcopy(data)
    events = []
    for e in old["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "thread_sort_index" or e.get("name", "").startswith("send "):
            continue
        if e["ph"] == "M" and e["name"] == "thread_name" and e["args"]["name"] not in ("compute", "receives"):
            continue
        e["pid"] -= 1
        track = (e["tid"] // 1000) % 10
        e["tid"] = {0: 0, 2: 1}.get(track, track)
        e.get("args", {}).pop("rank", None)
        events.append(e)
    old["traceEvents"] = events
    del old["otherData"]["ids"]
    return old


@pytest.mark.parametrize("make", [_one_f_one_b, _gpipe_slow_stage, _with_all_reduces])
def test_each_rank_is_one_process_with_ids_perfetto_reads_as_written(make):
    trace = make()
    data = to_chrome_trace(trace)
    assert problems(data) == [] and validate(data) == len(data["traceEvents"])
    events = data["traceEvents"]
    pids = sorted({e["pid"] for e in events})
    assert pids == [pid_of(r) for r in range(P)] == list(range(1, P + 1))  # stable, ordered, never 0
    owners: dict = {}
    for e in events:
        owners.setdefault(e["tid"], set()).add(e["pid"])
    assert all(len(p) == 1 for p in owners.values()) and not set(owners) & set(pids) and 0 not in owners
    meta = {(e["name"], e["pid"], e["tid"]): e["args"] for e in events if e["ph"] == "M"}
    for r in range(P):
        pid = pid_of(r)
        assert meta[("process_name", pid, tid_of(r, 0))] == {"name": f"rank {r}"}
        assert meta[("process_sort_index", pid, tid_of(r, 0))] == {"sort_index": r}
        tracks = sorted((meta[("thread_sort_index", p, t)]["sort_index"], a["name"])
                        for (name, p, t), a in meta.items() if name == "thread_name" and p == pid)
        labels = [label.split(" (")[0] for _, label in tracks]
        assert [k for i, k in enumerate(labels) if i == 0 or labels[i - 1] != k] == \
            [t for t in TRACKS if t != "all-reduces" or trace.ranks[r].collectives]
        compute = [e for e in events if e["ph"] == "X" and e["tid"] == tid_of(r, 0)]
        assert sorted(e["name"] for e in compute) == sorted(str(e.action) for e in trace.ranks[r].events)
    starts = [e for e in events if e["ph"] == "s"]
    assert len(starts) == len({e["id"] for e in starts}) == trace.messages
    assert all("args" not in e for e in events if e["ph"] == "f")  # Catapult warns when both ends carry args


def test_overlapping_messages_go_to_lanes_of_their_track():
    data = to_chrome_trace(_gpipe_slow_stage())
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in data["traceEvents"] if e["name"] == "thread_name"}
    lanes = sorted(name for (pid, _), name in names.items() if pid == pid_of(1) and name.startswith("sends"))
    assert len(lanes) > 1 and lanes[:2] == ["sends", "sends (2)"]
    merged = copy.deepcopy(data)  # negative control: every send on one track, as a naive export would write them
    for e in merged["traceEvents"]:
        if e["ph"] == "X" and e["name"].startswith("send "):
            e["tid"] = tid_of(e["args"]["src"], 1)
    assert any("must nest" in p for p in problems(merged))


def test_the_earlier_ids_break_the_rules():
    found = problems(_old_ids(to_chrome_trace(_one_f_one_b())))
    for message in ("pid 0 is Perfetto's idle process", "tid 0 is Perfetto's idle thread",
                    "tid 1 is used by processes [0, 1, 2, 3]", "has no thread_sort_index"):
        assert any(message in p for p in found), (message, found)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["traceEvents"].append({**_compute(d, 1), "tid": pid_of(2)}), "is the pid of another process"),
    (lambda d: d["traceEvents"].append({**_compute(d, 1), "tid": tid_of(0, 0)}), "is used by processes"),
    (lambda d: [e["args"].update(sort_index=0) for e in d["traceEvents"] if e["name"] == "process_sort_index"],
     "share a sort index"),
    (lambda d: d["traceEvents"].remove(next(e for e in d["traceEvents"] if e["name"] == "process_name")),
     "has no process_name"),
    (lambda d: d["traceEvents"].append({**_compute(d, 1), "ts": _compute(d, 1)["ts"] + 1}), "must nest"),
    (lambda d: d["traceEvents"].remove(next(e for e in d["traceEvents"] if e["ph"] == "f")), "one 's' and one 'f'"),
])
def test_each_rule_catches_its_break(mutate, message):
    data = to_chrome_trace(_one_f_one_b())
    assert problems(data) == []
    mutate(data)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate(data)


def _compute(data, rank):
    return dict(next(e for e in data["traceEvents"] if e["ph"] == "X" and e["tid"] == tid_of(rank, 0)))


@pytest.mark.parametrize("scheme", ["new", "old"])
def test_load_reads_this_export_and_the_earlier_one(tmp_path, scheme):
    trace = _with_all_reduces()
    data = to_chrome_trace(trace)
    path = tmp_path / "step.json"
    if scheme == "new":
        save(trace, str(path))
    else:
        path.write_text(json.dumps(_old_ids(data)))
    back = load(str(path))
    assert [r.rank for r in back.ranks] == list(range(P))
    assert back.step_time_s == pytest.approx(trace.step_time_s)
    assert back.idle_fractions == pytest.approx(trace.idle_fractions)
    assert [[str(e.action) for e in r.events] for r in back.ranks] == \
        [[str(e.action) for e in r.events] for r in trace.ranks]
    assert [t for times in sorted(m.times_s for r in back.ranks for m in r.messages) for t in times] == \
        pytest.approx([t for times in sorted(m.times_s for r in trace.ranks for m in r.messages) for t in times])
    if scheme == "new":
        assert [len(r.collectives) for r in back.ranks] == [1] * P
    assert from_chrome_trace(to_chrome_trace(back)).step_time_s == pytest.approx(trace.step_time_s)


def test_a_rank_without_events_keeps_its_place():
    trace = Trace([RankTrace(0), *simulate(labs.gpipe(2, 2)).ranks])
    for r, rank in enumerate(trace.ranks):
        rank.rank = r
    back = from_chrome_trace(to_chrome_trace(trace))
    assert [r.rank for r in back.ranks] == [0, 1, 2] and back.ranks[0].events == []


needs_viewer = pytest.mark.skipif(viewer.tools() is None, reason="needs CATAPULT (a catapult checkout) and Chromium")


@needs_viewer
@pytest.mark.parametrize("make", [_one_f_one_b, _gpipe_slow_stage, _with_all_reduces])
def test_catapults_viewer_shows_one_process_per_rank_with_named_tracks(tmp_path, make):
    data = to_chrome_trace(make())
    path = tmp_path / "step.json"
    path.write_text(json.dumps(data))
    results = viewer.verdicts(data, viewer.viewer_model(str(path)), P)
    assert all(ok for _, ok in results), results


@needs_viewer
def test_catapults_viewer_shows_the_earlier_ids_wrongly(tmp_path):
    data = _old_ids(to_chrome_trace(_one_f_one_b()))
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    results = dict(viewer.verdicts(data, viewer.viewer_model(str(path)), P))
    assert results["each rank's tracks are compute, sends, receives (all-reduces), in that order"] is False
