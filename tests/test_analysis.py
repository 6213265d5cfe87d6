"""Trace analysis and Trace Event Format export, on simulated timelines whose answers are known (no processes)."""
import json

import pytest

import labs
from labs.timeline import Costs, Link, Network, analysis, simulate
from labs.viz.perfetto import from_chrome_trace, load, save, to_chrome_trace, validate


def _naive_with_link():
    """P=2, M=1, F=1, B=2, every message 0.5: 0F0 [0,1], 1F0 [1.5,2.5], 1B0 [2.5,4.5], 0B0 [5,7]."""
    return simulate(labs.naive(2), Costs(1.0, 2.0, link_s=0.5))


def test_rank_times_add_up_and_split_wait_from_idle():
    times = analysis.rank_times(_naive_with_link())
    assert times[0] == pytest.approx({"rank": 0, "compute_s": 3.0, "wait_s": 4.0, "idle_s": 0.0, "idle_fraction": 4 / 7})
    assert times[1] == pytest.approx({"rank": 1, "compute_s": 3.0, "wait_s": 1.5, "idle_s": 2.5, "idle_fraction": 4 / 7})


def test_rank_times_of_gpipe_match_the_bubble_formula():
    trace = simulate(labs.gpipe(4, 8), Costs(1.0, 2.0))
    for t in analysis.rank_times(trace):
        assert t["compute_s"] + t["wait_s"] + t["idle_s"] == pytest.approx(trace.step_time_s)
        assert t["idle_fraction"] == pytest.approx(labs.idle_fraction(4, 8))


def test_stage_means_see_an_unbalanced_stage():
    trace = simulate(labs.one_f_one_b(4, 6), Costs([1, 1, 3, 1], [2, 2, 6, 2]))
    assert analysis.stage_means(trace) == {0: {"B": 2, "F": 1}, 1: {"B": 2, "F": 1}, 2: {"B": 6, "F": 3},
                                           3: {"B": 2, "F": 1}}


def test_link_times_count_messages_bytes_and_the_slow_link():
    net = Network(Link(latency_ms=100), {(1, 2): Link(latency_ms=1000, bandwidth_mb_s=1e-3)})  # 1 s + 1000 B / 1000 B/s
    trace = simulate(labs.gpipe(4, 3), Costs(1.0, 2.0, network=net, message_bytes=1000))
    links = analysis.link_times(trace)
    assert sorted(links) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    assert all(v["messages"] == 3 and v["bytes"] == 3000 for v in links.values())
    assert links[(1, 2)]["mean_in_flight_s"] == pytest.approx(2.0)  # rank 2 waits for every forward: full cost
    assert links[(0, 1)]["mean_in_flight_s"] == pytest.approx(0.1)
    assert links[(1, 2)]["mean_held_up_s"] > 10 * links[(0, 1)]["mean_held_up_s"]
    assert trace.messages == 18  # 2 (P-1) M


def test_critical_path_of_a_known_timeline():
    path = analysis.critical_path(_naive_with_link())
    assert [(s.kind, s.label, s.start_s, s.end_s) for s in path] == [
        ("compute", "0F0", 0, 1), ("message", "0->1", 1, 1.5), ("compute", "1F0", 1.5, 2.5),
        ("compute", "1B0", 2.5, 4.5), ("message", "1->0", 4.5, 5), ("compute", "0B0", 5, 7)]
    summary = analysis.path_summary(path)
    assert summary["compute_s"] == 6 and summary["message_s"] == 1 and summary["by_link"] == {(0, 1): 0.5, (1, 0): 0.5}


def test_critical_path_runs_through_the_slow_stage_and_tiles_the_step():
    trace = simulate(labs.gpipe(4, 8), Costs([1, 1, 3, 1], [2, 2, 6, 2]))
    path = analysis.critical_path(trace)
    assert path[0].start_s == 0 and path[-1].end_s == pytest.approx(trace.step_time_s)
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(path, path[1:]))  # no holes
    summary = analysis.path_summary(path)
    assert max(summary["by_stage"], key=summary["by_stage"].get) == 2
    assert summary["by_stage"][2] == pytest.approx(8 * (3 + 6))  # every F and B of the slow stage is on it


@pytest.mark.parametrize("costs,expected", [
    (dict(forward_s=[1, 1, 3, 1], backward_s=[2, 2, 6, 2]), {"cause": "slow stage", "where": 2}),
    (dict(network=Network(Link(10), {(2, 3): Link(800)}), message_bytes=10), {"cause": "slow link", "where": [2, 3]}),
])
def test_diagnose_finds_what_was_injected(costs, expected):
    trace = simulate(labs.one_f_one_b(4, 8), Costs(**{"forward_s": 1.0, "backward_s": 2.0, **costs}))
    assert analysis.diagnose(trace) == expected


def test_diagnose_tells_few_microbatches_from_healthy():
    assert analysis.diagnose(simulate(labs.gpipe(4, 2)))["cause"] == "few micro-batches"
    assert analysis.diagnose(simulate(labs.gpipe(4, 16)))["cause"] == "healthy"


# ------------------------------------------------------------------ Trace Event Format
def check_trace_event_format(data: dict) -> None:
    validate(data)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: next(e for e in d["traceEvents"] if e["ph"] == "X").pop("dur"), "lacks"),
    (lambda d: d["traceEvents"].append({"ph": "s", "name": "x", "cat": "m", "ts": 1, "pid": 1, "tid": 10000,
                                        "id": 999}), "one 's' and one 'f'"),
    (lambda d: d["traceEvents"].append({"ph": "Q", "name": "x"}), "unexpected phase"),
    (lambda d: next(e for e in d["traceEvents"] if e["ph"] == "X").update(ts=-1), ">= 0"),
])
def test_the_validator_rejects_broken_files(mutate, message):
    data = to_chrome_trace(_naive_with_link())
    validate(data)
    mutate(data)
    with pytest.raises(ValueError, match=message):
        validate(data)


def test_chrome_trace_is_valid_and_matches_the_trace(tmp_path):
    net = Network(Link(0.5), {(1, 2): Link(3)})
    trace = simulate(labs.one_f_one_b(4, 4), Costs(0.01, 0.02, network=net, message_bytes=4096))
    path = save(trace, str(tmp_path / "step.json"))
    data = json.load(open(path))
    check_trace_event_format(data)
    slices = [e for e in data["traceEvents"] if e["ph"] == "X" and e["cat"] != "message"]
    assert len(slices) == sum(len(r.events) for r in trace.ranks) == 4 * 2 * 4
    names = {e["args"]["name"] for e in data["traceEvents"] if e["name"] == "process_name"}
    assert names == {"rank 0", "rank 1", "rank 2", "rank 3"}
    for e in slices:
        event = next(x for x in trace.ranks[e["args"]["rank"]].events if str(x.action) == e["name"])
        assert e["dur"] == pytest.approx(event.duration_s * 1e6) and e["ts"] == pytest.approx(event.start_s * 1e6)
    assert len([e for e in data["traceEvents"] if e["ph"] == "s"]) == trace.messages == 2 * 3 * 4
    back = load(path)
    assert back.step_time_s == pytest.approx(trace.step_time_s)
    assert back.idle_fractions == pytest.approx(trace.idle_fractions)
    original = analysis.link_times(trace)
    assert {k: pytest.approx(v) for k, v in analysis.link_times(back).items()} == original
    assert [r.messages_sent for r in back.ranks] == [r.messages_sent for r in trace.ranks]
    assert from_chrome_trace(to_chrome_trace(back)).step_time_s == pytest.approx(trace.step_time_s)


def test_a_link_carries_one_message_at_a_time():
    """Transfer 2 > forward 1: the link, not the stage, sets the pace of rank 1's forwards (3, 5, 7, 9)."""
    net = Network(Link(latency_ms=0, bandwidth_mb_s=1e-6))  # 1 byte per second
    trace = simulate(labs.gpipe(2, 4), Costs(1.0, 2.0, network=net, message_bytes=2))
    assert [e.start_s for e in trace.ranks[1].events if e.action.kind == "F"] == [3, 5, 7, 9]
    latency_only = simulate(labs.gpipe(2, 4), Costs(1.0, 2.0, network=Network(Link(latency_ms=2000))))
    assert [e.start_s for e in latency_only.ranks[1].events if e.action.kind == "F"] == [3, 4, 5, 6]  # overlaps


# ------------------------------------------------------------------ a slow device against a slow stage; noise
def test_diagnose_tells_a_slow_rank_from_a_slow_stage_when_ranks_hold_two_stages():
    schedule = labs.interleaved(4, 8, 2)
    one_stage = Costs([1, 1, 1, 1, 1, 2, 1, 1], [2, 2, 2, 2, 2, 4, 2, 2])        # stage 5 (on rank 1) is slow
    one_rank = Costs([1, 2, 1, 1, 1, 2, 1, 1], [2, 4, 2, 2, 2, 4, 2, 2])         # stages 1 and 5: rank 1 is slow
    assert analysis.diagnose(simulate(schedule, one_stage)) == {"cause": "slow stage", "where": 5}
    assert analysis.diagnose(simulate(schedule, one_rank)) == {"cause": "slow rank", "where": 1}
    # one stage per rank: a slow device is a slow stage (nothing in the trace tells them apart)
    assert analysis.diagnose(simulate(labs.one_f_one_b(4, 8), Costs([1, 2, 1, 1], [2, 4, 2, 2])))["cause"] == \
        "slow stage"


def test_diagnose_sees_a_mildly_slow_stage_through_jitter_and_no_stage_in_jitter_alone():
    from labs.timeline.noise import JitterCosts
    schedule = labs.one_f_one_b(4, 16)
    for seed in range(10):
        slow = JitterCosts([1, 1, 1.35, 1], [2, 2, 2.7, 2], spread=0.2, seed=seed)
        assert analysis.diagnose(simulate(schedule, slow)) == {"cause": "slow stage", "where": 2}
        assert analysis.diagnose(simulate(schedule, JitterCosts(1.0, 2.0, spread=0.2, seed=seed)))["cause"] == "healthy"


def test_jitter_costs_are_seeded_and_within_their_spread():
    from labs.timeline.noise import JitterCosts
    schedule = labs.gpipe(3, 6)
    a = simulate(schedule, JitterCosts(1.0, 2.0, spread=0.1, seed=4))
    assert a.step_time_s == simulate(schedule, JitterCosts(1.0, 2.0, spread=0.1, seed=4)).step_time_s
    assert a.step_time_s != simulate(schedule, JitterCosts(1.0, 2.0, spread=0.1, seed=5)).step_time_s
    durations = [e.duration_s / (1.0 if e.action.kind == "F" else 2.0) for events in a.events for e in events]
    assert 0.9 <= min(durations) < max(durations) <= 1.1
    with pytest.raises(labs.InputError):
        JitterCosts(1.0, 2.0, spread=1.5)


def test_a_busy_network_delays_some_messages_on_every_link_a_slow_link_all_on_one():
    from labs.timeline.noise import BusyNetwork
    schedule = labs.one_f_one_b(4, 16)
    busy = simulate(schedule, Costs(1.0, 2.0, network=BusyNetwork(Link(0), 0.3, (0.8, 1.2), seed=1)))
    late = [m.received_s - m.sent_s > 0.5 for r in busy.ranks for m in r.messages]
    assert 0.15 < sum(late) / len(late) < 0.45
    links = analysis.link_times(busy)
    assert all(v["min_in_flight_s"] in (None, 0.0) or v["min_in_flight_s"] < 0.5 for v in links.values())
    assert analysis.diagnose(busy)["cause"] != "slow link"
    slow = simulate(schedule, Costs(1.0, 2.0, network=Network(Link(0), {(1, 2): Link(latency_ms=1000)})))
    assert analysis.diagnose(slow) == {"cause": "slow link", "where": [1, 2]}
    with pytest.raises(labs.InputError):
        BusyNetwork(Link(0), 1.5, (0, 1))


def test_a_message_taken_late_is_blamed_on_the_rank_not_on_a_producer_long_done():
    """Stage 1 three times slower: 0F1 ends at 2 s, rank 1 is free at 4 s. A real rank that then takes the message
    3 ms late (its receive thread waiting for a core) waited, but not for rank 0: the path stays on rank 1. Control:
    when the producer really ends after rank 1 is free, the wait is the message's."""
    trace = simulate(labs.gpipe(2, 2), Costs([1.0, 3.0], [2.0, 6.0]))
    late = next(m for m in trace.ranks[1].messages if m.kind == "F" and m.microbatch == 1)
    late.received_s = late.needed_s + 0.003

    def before_1f1(path):
        steps = [(s.kind, s.label) for s in path if s.kind != "gap"]
        return steps[steps.index(("compute", "1F1")) - 1]

    assert before_1f1(analysis.critical_path(trace)) == ("compute", "1F0")
    producer = next(e for e in trace.ranks[0].events if str(e.action) == "0F1")
    producer.end_s = late.needed_s + 0.001  # now rank 1 did wait for rank 0
    assert before_1f1(analysis.critical_path(trace)) == ("message", "0->1")
