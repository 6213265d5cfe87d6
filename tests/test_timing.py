"""labs.course.timing on simulated steps (no process starts): the replay is the simulator's rule, a step that ran at
its costs has no overhead effect, measured overheads are read back exactly, and the verdict reads the fastest step."""
import dataclasses
import types

import pytest

from labs.course.timing import check_timing, fastest, overhead_effect, overheads, replay, step_costs, timing_holds
from labs.schedules import gpipe, interleaved, one_f_one_b, zb_h1
from labs.theory import idle_fraction
from labs.timeline import Costs, Link, Network, simulate


@pytest.mark.parametrize("schedule", [gpipe(4, 8), one_f_one_b(4, 16), interleaved(4, 8, 2), zb_h1(4, 8)],
                         ids=["gpipe", "1f1b", "interleaved", "zb-h1"])
def test_replay_equals_the_simulator_for_per_stage_costs(schedule):
    trace = simulate(schedule, Costs(0.02, 0.04, 0.01, link_s=0.001))
    durations = {e.action: e.duration_s for events in trace.events for e in events}
    assert replay(schedule, durations, 0.001) == pytest.approx(trace.step_time_s)


def _run(schedule, costs, *steps):
    return types.SimpleNamespace(schedule=schedule, costs=costs, step_traces=list(steps),
                                 simulated=simulate(schedule, costs))


def test_a_step_at_its_costs_has_no_overhead_and_measured_overheads_are_read_back():
    schedule, paced = one_f_one_b(4, 16), Costs(0.02, 0.04)
    run = _run(schedule, paced, simulate(schedule, paced))
    assert overhead_effect(run) == pytest.approx(0.0, abs=1e-12)
    slow = simulate(schedule, dataclasses.replace(paced, forward_s=0.021, backward_s=0.0407, link_s=0.0008))
    over = overheads(run, slow)
    assert over["F"] == pytest.approx(0.001) and over["B"] == pytest.approx(0.0007)
    assert over["link_s"] == pytest.approx(0.0008)
    # replayed with the measured pieces, the slow step's idle comes back to the paced schedule's exactly
    assert slow.idle_fraction - overhead_effect(run, slow) == pytest.approx(idle_fraction(4, 16), abs=1e-9)
    assert slow.idle_fraction - idle_fraction(4, 16) > 0.01  # what the plain 0.03 band had to absorb


def test_the_verdict_reads_the_fastest_step_and_a_wrong_formula_fails():
    schedule, paced = interleaved(4, 8, 2), Costs(0.02, 0.04)
    clean = simulate(schedule, dataclasses.replace(paced, forward_s=0.0205, backward_s=0.0405, link_s=0.0008))
    loaded = simulate(schedule, dataclasses.replace(paced, forward_s=0.025, backward_s=0.046, link_s=0.004))
    run = _run(schedule, paced, loaded, clean, loaded)
    assert fastest(run) is clean
    check = check_timing(run, idle_fraction(4, 8, 2))
    assert check.holds and check.stretch < 1.05 and abs(check.corrected - check.theory) < 1e-9
    assert timing_holds(run, idle_fraction(4, 8, 2))
    assert not timing_holds(run, 3 / (2 * 8))  # the bubble overhead (P-1)/(vM) taken for the idle share
    assert not timing_holds(_run(schedule, paced, loaded), idle_fraction(4, 8, 2))  # only loaded steps: > 10% slow


def test_a_slow_link_stays_the_pipelines_and_is_not_explained_away():
    """Mystery D's shape without processes: 1F1B P=4 M=2, link 0-1 at 40 ms in the run's network. The step's message
    waits on that link are what the network model charges, so ``step_costs`` leaves them out and the free-link
    formula fails. Control: with the link missing from the model, the same waits count as the runtime's cost."""
    schedule, paced = one_f_one_b(4, 2), Costs(0.02, 0.04)
    network = Network(Link(0), {(0, 1): Link(latency_ms=40)})
    step = simulate(schedule, dataclasses.replace(paced, network=network))
    run = _run(schedule, paced, step)
    run.simulated = step  # a PipelineRun simulates with its network
    assert step_costs(run)["message_s"] == pytest.approx(0.0, abs=1e-9)
    assert not timing_holds(run, idle_fraction(4, 2))
    run.simulated = simulate(schedule, paced)  # control: the link not in the model is a cost the replay explains
    assert step_costs(run)["message_s"] > 0.005
