"""Link costs, uneven stages, stragglers and blocking messages on real gloo ranks, each against the simulator."""
import json
import subprocess
import sys
import time

import pytest

import labs
from labs.runtime import RankFailed
from labs.timeline import Link, Network, analysis
from labs.viz.perfetto import to_chrome_trace
from tests.test_analysis import check_trace_event_format

PACE = (10, 20)


def _close(measured: float, simulated: float, rel: float = 0.12) -> bool:
    return abs(measured - simulated) <= rel * simulated


def test_a_slow_link_stretches_the_step_as_simulated_and_is_recorded():
    net = Network(Link(1.0), {(1, 2): Link(latency_ms=30, bandwidth_mb_s=2)})  # 30 ms + 4096 B / 2 MB/s = 32 ms
    run = labs.run_pipeline("1f1b", P=4, M=4, layers=4, pace_ms=PACE, network=net)
    assert run.max_grad_error <= 1e-5
    assert _close(run.step_time_s, run.simulated.step_time_s), (run.step_time_s, run.simulated.step_time_s)
    free_link = labs.simulate(run.schedule, run.costs).step_time_s  # the same costs, every message free
    assert run.simulated.step_time_s > free_link + 4 * 0.030  # the slow link is on the critical path
    links = analysis.link_times(run.trace)
    assert sorted(links) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    assert all(v["messages"] == 4 and v["bytes"] == 4 * 16 * 64 * 4 for v in links.values())
    slow = links[(1, 2)]["mean_in_flight_s"]
    assert 0.032 <= slow <= 0.032 + 0.005, slow  # never faster than the link; a little overhead at most
    assert analysis.diagnose(run.trace) == {"cause": "slow link", "where": [1, 2]}


def test_slow_stage_and_straggler_are_mirrored_by_the_simulator():
    run = labs.run_pipeline("gpipe", P=4, M=4, layers=4, pace_ms=PACE, slow_stages={2: 3.0})
    assert run.max_grad_error <= 1e-5
    assert _close(run.step_time_s, run.simulated.step_time_s)
    means = analysis.stage_means(run.trace)
    assert means[2]["F"] == pytest.approx(0.030, abs=0.003) and means[1]["F"] == pytest.approx(0.010, abs=0.003)
    assert analysis.diagnose(run.trace) == {"cause": "slow stage", "where": 2}
    run = labs.run_pipeline("interleaved", P=2, M=4, v=2, layers=4, pace_ms=PACE,
                            straggler=(1, 2.0))
    means = analysis.stage_means(run.trace)
    assert [round(means[s]["B"] / 0.020) for s in range(4)] == [1, 2, 1, 2]  # rank 1 holds stages 1 and 3
    assert _close(run.step_time_s, run.simulated.step_time_s)


def test_blocking_one_f_one_b_deadlocks_for_real_is_named_in_seconds_and_gpipe_does_not():
    """Both ranks blocked in a send to each other (0F1 and 1B0): reported as a cycle within a few seconds, long
    before the timeout; GPipe's blocking sends never form a cycle (negative control)."""
    started = time.perf_counter()
    with pytest.raises(RankFailed) as caught:
        labs.run_pipeline("1f1b", P=2, M=2, layers=2, pace_ms=(1, 2), blocking=True, timeout_s=30)
    assert time.perf_counter() - started < 15
    text = str(caught.value)
    assert "deadlock: ranks 0 -> 1 -> 0 wait on each other in a cycle" in text, text
    assert "rank 0 has waited" in text and "to send the input of 1F1 to rank 1" in text, text
    assert "to send the input of 0B0 to rank 0" in text, text
    run = labs.run_pipeline("gpipe", P=2, M=2, layers=2, pace_ms=(1, 2), blocking=True, timeout_s=20)
    assert run.max_grad_error <= 1e-5
    run = labs.run_pipeline("1f1b", P=2, M=2, layers=2, pace_ms=(1, 2), timeout_s=20)
    assert run.max_grad_error <= 1e-5


def test_chrome_trace_of_a_real_run_is_valid_and_complete():
    run = labs.run_pipeline("1f1b", P=4, M=4, pace_ms=(2, 4), network=Link(1.0))
    data = to_chrome_trace(run.trace)
    check_trace_event_format(data)
    slices = [e for e in data["traceEvents"] if e["ph"] == "X" and e["cat"] in ("forward", "backward")]
    assert len(slices) == 32 and len([e for e in data["traceEvents"] if e["ph"] == "s"]) == run.trace.messages == 24
    assert sum(e["dur"] for e in slices) == pytest.approx(1e6 * sum(r.busy_s for r in run.trace.ranks))


@pytest.mark.parametrize("kwargs,message", [
    (dict(network=Network(Link(1), {(1, 7): Link(5)})), "slow link (1, 7) but the run has ranks 0..3"),
    (dict(slow_stages={9: 2.0}), "stage 9"),
    (dict(straggler=(5, 2.0)), "rank 5"),
    (dict(straggler=(1, 0)), "number > 0"),
    (dict(slow_stages={1: 2.0}, pace_ms=None), "give pace_ms"),
    (dict(network="fast"), "labs.Link"),
])
def test_bad_conditions_fail_before_any_process_starts(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        labs.run_pipeline("1f1b", **kwargs)


def test_cli_link_options_and_chrome_trace(tmp_path, capsys):
    """``python -m labs run`` with every link option, in this process (the real command: test_runtime)."""
    from labs.__main__ import main
    out = tmp_path / "t.json"
    assert main(["run", "-M", "4", "--pace-ms", "2,4", "--link", "1", "--slow-link", "1-2:10,5", "--slow-stage",
                 "3:2", "--chrome-trace", str(out)]) == 0
    done = capsys.readouterr().out
    assert "simulated" in done and "same links and stages" in done
    check_trace_event_format(json.loads(out.read_text()))
    with pytest.raises(SystemExit) as bad:
        main(["run", "--slow-link", "1:10"])
    assert bad.value.code != 0 and "A-B:MS" in str(bad.value.code)
