"""The zero-bubble family as generators (ZB-H1, ZB-H2, ZB-V in the authors' order, DualPipeV) against their closed
forms (labs.theory), with the paper's forms as negative controls where their conditions fail. Simulation only."""
from __future__ import annotations

import itertools

import pytest

from labs import theory
from labs.schedules import (ScheduleError, dualpipe_v, dualpipe_v_pairs, make, one_f_one_b, validate, zb_h1, zb_h2,
                            zb_v, zb_v_greedy)
from labs.timeline import Costs, simulate

RATIOS = list(itertools.product((0.5, 1, 2), repeat=3))  # (F, I, W): 27 cost ratios


def _span_bubble(trace) -> float:
    """The largest idle time inside one rank's own first-start-to-last-end."""
    return max(max(e.end_s for e in r.events) - min(e.start_s for e in r.events) - r.busy_s for r in trace.ranks)


@pytest.mark.parametrize("name", ["zb-h1", "zb-h2", "zb-v", "dualpipe-v"])
def test_every_generator_builds_valid_lists(name):
    for P in range(2, 6):
        for M in range(2 * P if name == "dualpipe-v" else P, 3 * P + 1):
            schedule = validate(make(name, P, M))
            kinds = {a.kind for acts in schedule for a in acts}
            assert kinds == (set("FIWB") if name == "dualpipe-v" else set("FIW"))


def test_make_refuses_what_a_schedule_cannot_take():
    with pytest.raises(ScheduleError, match="2P = 8"):
        make("dualpipe-v", 4, 7)
    with pytest.raises(ScheduleError, match="v=2"):
        make("zb-v", 4, 8, 3)
    with pytest.raises(ScheduleError, match="v=1"):
        make("zb-h2", 4, 8, 2)


def test_zb_h1_bubble_is_the_papers_only_while_w_is_no_longer_than_f_and_i():
    for P in (2, 4, 6):
        for M in (P, 2 * P + 1):
            for F, I, W in RATIOS:
                step = simulate(zb_h1(P, M), Costs(F, I, W)).step_time_s
                assert step == pytest.approx(M * (F + I + W) + theory.zb_h1_bubble(P, F, I, W))
                paper = M * (F + I + W) + theory.zb_h1_paper_bubble(P, F, I, W)
                assert (step == pytest.approx(paper)) == (W <= min(F, I)), (P, M, F, I, W)
    # the negative control the notebook prints: F, I, W = 1, 1, 2 at P=4, M=8
    assert simulate(zb_h1(4, 8), Costs(1, 1, 2)).step_time_s == 35
    assert 8 * 4 + theory.zb_h1_paper_bubble(4, 1, 1, 2) == 32


def test_zb_h2_step_and_span_bubble():
    for P in (2, 3, 5):
        for M in (2 * P - 1, 3 * P):
            for F, I, W in RATIOS:
                trace = simulate(zb_h2(P, M), Costs(F, I, W))
                assert trace.step_time_s == pytest.approx(theory.zb_h2_step(P, M, F, I, W))
                assert _span_bubble(trace) == pytest.approx(theory.zb_h2_span_bubble(P, F, I, W))
                if W <= F:  # the paper's (P-1)(F+B-2W), B our I, holds there
                    assert _span_bubble(trace) == pytest.approx((P - 1) * max(0.0, F + I - 2 * W))
    # negative control: W > F, the paper's form says 0 where rank 0 waits (P-1)(I-F) for its first gradient
    assert _span_bubble(simulate(zb_h2(4, 8), Costs(0.5, 1, 1))) == pytest.approx(1.5)
    # at F = I = W one synchronised step of ZB-H2 is no shorter than ZB-H1's: the ramp (P-1)F stays
    assert simulate(zb_h2(4, 8), Costs(1, 1, 1)).step_time_s == simulate(zb_h1(4, 8), Costs(1, 1, 1)).step_time_s == 27


def test_zb_v_reaches_the_lower_bound_with_1f1b_memory():
    for P in (2, 3, 4, 6):
        for M in range(P, 3 * P + 1):
            trace = simulate(zb_v(P, M), Costs(1, 1, 1))
            assert trace.step_time_s == theory.zb_v_step(P, M, 1)
            assert _span_bubble(trace) == max(0, 2 * P - 1 - M)
            assert max(trace.peak_activations) == 2 * P  # chunks of half a stage: P micro-batches, 1F1B's peak


def test_the_greedy_v_is_slower_where_i_first_delays_the_last_round_trip():
    slower = [(P, M) for P in (2, 3, 4) for M in range(P, P + 7)
              if simulate(zb_v_greedy(P, M), Costs(1, 1, 1)).step_time_s
              > simulate(zb_v(P, M), Costs(1, 1, 1)).step_time_s]
    assert slower == [(3, 4), (3, 6), (3, 8), (4, 5), (4, 6), (4, 8), (4, 9), (4, 10)]
    half = Costs(0.005, 0.005, 0.005)  # the notebook's 10 ms forward, 20 ms backward (10 of it W), half-size chunks
    assert round(simulate(zb_v_greedy(4, 8), half).step_time_s * 1000, 6) == 260
    assert round(simulate(zb_v(4, 8), half).step_time_s * 1000, 6) == 255


def test_dualpipe_v_against_deepseeks_formula():
    for P in (2, 3, 4):
        for M in (2 * P, 2 * P + 3):
            pairs = dualpipe_v_pairs(P, M)
            for F, I, W in [(1, 1, 1), (1, 1, 0.5), (2, 2, 1)]:
                trace = simulate(dualpipe_v(P, M), Costs(F, I, W), together=pairs)
                assert _span_bubble(trace) == pytest.approx(theory.dualpipe_v_span_bubble(P, F, I, W))
            trace = simulate(dualpipe_v(P, M), Costs(2, 1, 1), together=pairs)  # F > I: the formula misses
            assert _span_bubble(trace) != pytest.approx(theory.dualpipe_v_span_bubble(P, 2, 1, 1))


def test_overlapping_a_pair_pays_only_when_the_pair_is_shorter():
    pairs = dualpipe_v_pairs(4, 16)
    plain = simulate(dualpipe_v(4, 16), Costs(1, 1, 1), together=pairs).step_time_s
    assert simulate(dualpipe_v(4, 16), Costs(1, 1, 1), together=pairs, pair_s=3).step_time_s == plain
    assert simulate(dualpipe_v(4, 16), Costs(1, 1, 1), together=pairs, pair_s=2).step_time_s < plain
    assert plain > simulate(zb_v(4, 16), Costs(1, 1, 1)).step_time_s  # a pair waits for both inputs


def test_peaks_in_micro_batches_of_a_stage():
    P, M = 4, 12
    peak = {name: max(simulate(make(name, P, M), Costs(1, 1, 1)).peak_activations)
            for name in ("1f1b", "zb-h1", "zb-h2", "zb-v", "dualpipe-v")}
    assert peak == {"1f1b": P, "zb-h1": P, "zb-h2": 2 * P - 1, "zb-v": 2 * P, "dualpipe-v": 2 * P + 1}
    # negative control: ZB-H1 with every W moved to the end holds all M
    late = [[a for a in acts if a.kind != "W"] + [a for a in acts if a.kind == "W"] for acts in zb_h1(P, M)]
    assert max(simulate(late, Costs(1, 1, 1)).peak_activations) == M
    assert simulate(late, Costs(1, 1, 1)).step_time_s > simulate(zb_h1(P, M), Costs(1, 1, 1)).step_time_s
    assert max(simulate(one_f_one_b(P, M), Costs(1, 1, 1)).peak_activations) == P
