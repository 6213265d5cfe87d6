"""Notebook 07 (communication): its graded exercises (``traffic`` for any placement, ``gpipe_step_on_link``) give full
marks to a right answer and nothing to each plausible wrong one or a stub, on cases drawn as the grader draws them;
its verdicts print False on the planted inputs a real mistake produces (the old prose's "twice per micro-batch", a
link bypassed on real ranks, shuffled or one-parameter message times); the slow link's closed form equals the
simulator. Only the test marked real ranks starts processes."""
import random

import pytest

import labs
from labs.course import timing
from labs.course.p2p import fit
from labs.exercises import nb07
from labs.grading import score_outputs
from labs.theory import slow_link_extra_s
from labs.timeline import Costs, Link, Network, simulate
from tests.kernel_outputs import NOT_IMPLEMENTED, outputs

# ------------------------------------------------------------------ 07 traffic (any placement)
def _traffic(owners, M, nbytes):
    crossings = sum(a != b for a, b in zip(owners, owners[1:]))
    return 2 * crossings * M, 2 * crossings * M * nbytes


def test_traffic_score_right_wrong_and_stubs():
    graded = nb07.GRADED[0]
    cases = graded.cases(random.Random(1))
    assert graded.score(cases, outputs(graded, _traffic, cases))[0] == 1.0
    for name, wrong in nb07.TRAFFIC_WRONG.items():  # right only where every boundary crosses, or on one rank
        assert graded.score(cases, outputs(graded, wrong, cases))[0] <= 0.2, name
    for stub in ([0, 0], None, []):
        assert score_outputs(graded, cases, [stub] * len(cases))[0] == 0.0
    one_way = outputs(graded, lambda o, M, n: [x // 2 for x in _traffic(o, M, n)], cases)
    fraction, message = graded.score(cases, one_way)
    assert fraction == 0.0 and "carries something back" in message


def test_traffic_hidden_placements_are_not_the_shown_ones_and_cover_every_kind():
    shown = {(tuple(o), M) for o, M, _ in nb07.SHOWN["traffic"]}
    for seed in range(5):
        cases = nb07.GRADED[0].cases(random.Random(seed))
        assert not {(tuple(o), M) for o, M, _ in cases} & shown
        assert sum(len(set(o)) > 1 for o, _, _ in cases) >= 16  # at most one one-rank case


def test_counted_traffic_counts_what_a_simulated_step_sends():
    assert nb07.counted_traffic([0, 1, 2, 3, 0, 1, 2, 3], 8, 2048) == (112, 229376)  # notebook 05's interleaving
    assert nb07.counted_traffic([0, 1, 1, 0], 2, 10) == (8, 80)  # a V: the middle boundary stays inside rank 1
    assert nb07.counted_traffic([0, 0, 0], 3, 5) == (0, 0)


# ------------------------------------------------------------------ 07 gpipe_step_on_link
def _step(P, M, F, B, L, T):
    if P == 1:
        return M * (F + B)
    return P * F + (P - 1) * (T + L) + (M - 1) * max(F, T) + P * B + (P - 1) * (T + L) + (M - 1) * max(B, T)


def test_the_gpipe_on_a_link_closed_form_equals_the_simulator_on_random_shapes():
    rng = random.Random(0)
    for _ in range(300):
        P, M, F = rng.randint(1, 8), rng.randint(1, 24), rng.uniform(1, 30)
        case = (P, M, F, F * rng.uniform(0.5, 3), rng.choice([0, rng.uniform(0, 2 * F)]),
                rng.choice([0, rng.uniform(0, 9 * F)]))
        assert _step(*case) == pytest.approx(nb07.simulated_step_ms(*case), rel=1e-9), case


def test_gpipe_step_on_link_score_right_wrong_and_stubs():
    graded = nb07.GRADED[1]
    cases = graded.cases(random.Random(2))
    assert not set(cases) & set(nb07.SHOWN["gpipe_step_on_link"])
    assert graded.score(cases, outputs(graded, _step, cases))[0] == 1.0
    for name, wrong in nb07.STEP_WRONG.items():  # right on the two trivial cases only, which earn nothing
        assert graded.score(cases, outputs(graded, wrong, cases))[0] == 0.0, name
    assert graded.score(cases, [0.0] * len(cases))[0] == 0.0
    assert graded.score(cases, [NOT_IMPLEMENTED] * len(cases))[0] == 0.0


def test_the_visible_checks_accept_the_answers_and_name_the_mistake(capsys):
    assert nb07.check_traffic(_traffic) and nb07.check_gpipe_step_on_link(_step)
    assert not nb07.check_gpipe_step_on_link(nb07.STEP_WRONG["the transfer taken for more latency"])
    assert "occupies its link longer than a forward" in capsys.readouterr().out


# ------------------------------------------------------------------ 07: the slow link's cost, derived
def _extra(name, P, M, k, latency_s, F=0.02, B=0.04):
    schedule = labs.make(name, P, M)
    network = Network(Link(0), {(k, k + 1): Link(latency_ms=latency_s * 1000)})
    return simulate(schedule, Costs(F, B, network=network)).step_time_s - simulate(schedule, Costs(F, B)).step_time_s


def test_the_slow_link_formula_equals_the_simulator_on_273_cases_per_schedule():
    checked = 0
    for P in (2, 3, 4, 8):
        for M in (1, 2, 3, 4, 5, 8, 16):
            for k in range(P - 1):
                for F, B, L in ((0.02, 0.04, 0.05), (0.03, 0.03, 0.005), (0.01, 0.03, 0.2)):
                    for name in ("gpipe", "1f1b"):
                        assert slow_link_extra_s(name, P, M, k, L) == pytest.approx(_extra(name, P, M, k, L, F, B),
                                                                                   abs=1e-9), (name, P, M, k, F, B, L)
                    checked += 1
    assert checked == 273


def test_the_old_prose_twice_per_microbatch_fails_the_table_verdict():
    simulated = [_extra("1f1b", 4, M, k, 0.05) for k in range(3) for M in (2, 4, 8, 16)]
    derived = [slow_link_extra_s("1f1b", 4, M, k, 0.05) for k in range(3) for M in (2, 4, 8, 16)]
    twice = [2 * 2 * 0.05 * M for k in range(3) for M in (2, 4, 8, 16)]  # paid twice per micro-batch
    assert nb07.matches_every_case(simulated, derived)
    assert not nb07.matches_every_case(simulated, twice)
    with pytest.raises(labs.InputError):
        slow_link_extra_s("1f1b", 4, 8, 3, 0.05)


def test_slow_link_verdict_on_a_real_run_and_with_the_link_bypassed_real_ranks(monkeypatch):
    """07 cell 'A slow link, injected': the measured extra matches 2L*ceil((M-P+k+2)/2); with the transport's delay
    switched off (the link bypassed, everything else the same) the same verdict prints False."""
    slow = Network(Link(0), {(1, 2): Link(latency_ms=50)})
    predicted = slow_link_extra_s("1f1b", 4, 8, 1, 0.050)

    def extra(run):
        return timing.fastest(run).step_time_s - simulate(run.schedule, run.costs).step_time_s
    run = labs.run_pipeline("1f1b", P=4, M=8, layers=4, pace_ms=(20, 40), network=slow, steps=2)
    assert nb07.slow_link_cost_matches(extra(run), predicted)
    import labs.runtime.transport as transport
    monkeypatch.setattr(transport, "sleep_until", lambda deadline: None)
    bypassed = labs.run_pipeline("1f1b", P=4, M=8, layers=4, pace_ms=(20, 40), network=slow, steps=2)
    assert not nb07.slow_link_cost_matches(extra(bypassed), predicted)


# ------------------------------------------------------------------ 07: alpha-beta, through the course's own fit
def test_the_fit_verdicts_with_the_course_fit_and_planted_times():
    sizes = [2 ** k for k in range(10, 25, 2)]
    rng = random.Random(0)
    real = {s: (50e-6 + s / 5e9) * rng.uniform(0.8, 1.6) for s in sizes}
    latency, bandwidth, _ = fit(real)
    assert nb07.line_explains_every_size(real, latency, bandwidth) and nb07.one_parameter_models_miss(real)
    values = list(real.values())
    shuffled = dict(zip(sizes, values[::-1]))
    assert not nb07.line_explains_every_size(shuffled, *fit(shuffled)[:2])
    assert not nb07.one_parameter_models_miss({s: 50e-6 for s in sizes})
    assert not nb07.one_parameter_models_miss({s: s / 5e9 for s in sizes})


