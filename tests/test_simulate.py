"""Simulator and closed-form theory (no processes)."""
import pytest

from labs.schedules import gpipe, make, naive, one_f_one_b, interleaved
from labs.theory import bubble_overhead, idle_fraction
from labs.timeline import Costs, activations_in_flight, ideal_time_s, simulate
from tests.test_schedules import COMBOS


def test_the_seed_numbers_corrected():
    assert bubble_overhead(4, 1) == 3.0  # 300% of the ideal compute time, not "75%"
    assert idle_fraction(4, 1) == 0.75
    assert round(idle_fraction(4, 8), 3) == 0.273  # the notes say 37.5%
    assert round(idle_fraction(4, 16), 3) == 0.158
    assert idle_fraction(4, 8, 2) == 3 / 19


@pytest.mark.parametrize("name,P,M,v", COMBOS)
@pytest.mark.parametrize("forward,backward", [(1.0, 2.0), (1.0, 1.0)])
def test_simulated_idle_fraction_equals_the_formula(name, P, M, v, forward, backward):
    trace = simulate(make(name, P, M, v), Costs(forward / v, backward / v))
    assert trace.idle_fraction == pytest.approx(idle_fraction(P, M, v), abs=1e-9)
    assert trace.step_time_s == pytest.approx((v * M + P - 1) * (forward + backward) / v)


def test_activations_in_flight():
    assert activations_in_flight(gpipe(4, 8)) == [8, 8, 8, 8]
    assert activations_in_flight(one_f_one_b(4, 8)) == [4, 3, 2, 1]
    assert activations_in_flight(one_f_one_b(4, 2)) == [2, 2, 2, 1]
    peak = activations_in_flight(interleaved(4, 8, 2))
    # In stage-equivalents (chunk micro-batches / v) the first rank holds about 1 + (P-1)/(P*v) times 1F1B's P.
    assert peak[0] / 2 / 4 == pytest.approx(1 + 3 / 8)


def test_link_latency_delays_every_hop():
    schedule = naive(4)
    assert simulate(schedule, Costs(1, 2, link_s=0.5)).step_time_s == pytest.approx(12 + 6 * 0.5)
    assert simulate(schedule, Costs(1, 2)).step_time_s == pytest.approx(12)  # a free link: only the bubble
    assert ideal_time_s(schedule, Costs(1, 2, link_s=0.5)) == pytest.approx(3)  # ideal: one rank's compute alone


def test_ideal_time_is_the_busiest_ranks_compute():
    assert ideal_time_s(gpipe(4, 8), Costs(1, 2)) == pytest.approx(8 * 3)  # M(F+B): the formulas' ideal
    assert ideal_time_s(gpipe(2, 4), Costs([1, 3], [2, 6])) == pytest.approx(4 * 9)  # the slow stage's rank


def test_unbalanced_stage_costs_per_stage_lists():
    trace = simulate(gpipe(2, 4), Costs([1, 3], [2, 6]))
    assert trace.step_time_s == pytest.approx(1 + 4 * 3 + 4 * 6 + 2)
    assert Costs.per_layer(1, 2, [1, 3]).forward_s == [1, 3]


def test_message_count_grows_with_v():
    base = simulate(one_f_one_b(4, 8)).messages
    assert base == 2 * 3 * 8
    assert simulate(interleaved(4, 8, 2)).messages == 2 * (4 * 2 - 1) * 8
