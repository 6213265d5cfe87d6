"""Notebooks 05 and 07's busy-proof timing verdicts (``labs.exercises.verdicts_timing``) on real paced runs: True for
the right claim, False for a planted wrong one fed the same measured steps (the registry's simulated negative controls
are in tests/test_verdicts.py)."""
from __future__ import annotations

import dataclasses
import types

import labs
from labs.exercises.verdicts_timing import idle_within_overheads, own_overhead, step_within_simulated


def test_the_fastest_steps_idle_matches_theory_and_a_wrong_formula_does_not():
    P, M, v = 4, 8, 2
    run = labs.run_pipeline(labs.interleaved(P, M, v), P=P, M=M, layers=16, pace_ms=(10, 20))  # 20/40 ms per chunk
    assert idle_within_overheads(run, labs.idle_fraction(P, M, v))
    assert not idle_within_overheads(run, (P - 1) / M)  # the seed's (P-1)/M, blind to v
    assert not idle_within_overheads(run, labs.idle_fraction(P, M, v) + 0.06)


def test_a_link_run_matches_its_simulation_and_not_one_with_the_link_bypassed_or_doubled():
    run = labs.run_pipeline("gpipe", P=4, M=8, layers=4, pace_ms=(20, 40), network=labs.Link(latency_ms=20))
    assert 0.0 <= own_overhead(run, 0.020) < 0.10
    assert step_within_simulated(run, 0.020)
    for latency_ms in (0, 40):  # the same measured steps against a simulation of another link
        costs = dataclasses.replace(run.costs, network=labs.Network(labs.Link(latency_ms=latency_ms)),
                                    message_bytes=2048)
        planted = types.SimpleNamespace(schedule=run.schedule, step_traces=run.step_traces,
                                        simulated=labs.simulate(run.schedule, costs))
        assert not step_within_simulated(planted, latency_ms / 1000), latency_ms
