"""Notebook 09 (the bubble detective): ``diagnose`` is graded on pairs of look-alike traces that tell a right detective
from each nearly right one (and give constants nothing); a wrong diagnosis does not bring the idle back to the
healthy pipeline's (the verdict the notebook prints, fed planted runs, and one real run); the detective's simulated
mysteries and path verdicts; the notebook graded end to end (solved: 3 of 3, student: 0)."""
import copy
import math
import os
import random
import statistics
import types

import pytest

import labs
from labs.course import detective, timing
from labs.exercises import nb09
from labs.grading.grader import grade_notebook
from labs.theory import idle_fraction, slow_link_extra_s
from labs.timeline import Costs, analysis, simulate
from labs.timeline.analysis import critical_path, path_summary

from .exercise_copy import exercise_copy
from tests.kernel_outputs import NOT_IMPLEMENTED, outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ------------------------------------------------------------------ 09 diagnose on twin traces
def _reference():
    return types.FunctionType(analysis.diagnose.__code__, analysis.diagnose.__globals__)


def _with_factor(factor):
    def detective(trace):
        saved, analysis._STAGE_FACTOR = analysis._STAGE_FACTOR, factor
        try:
            return _reference()(trace)
        finally:
            analysis._STAGE_FACTOR = saved
    return detective


def _mean_not_min(trace):
    means = analysis.stage_means(trace)
    forward = statistics.mean(m["F"] for m in means.values())
    worst = {}
    for (src, dst), v in analysis.link_times(trace).items():
        if v["mean_in_flight_s"] is not None:
            cable = (min(src, dst), max(src, dst))
            worst[cable] = max(worst.get(cable, 0.0), v["mean_in_flight_s"])
    if worst and max(worst.values()) > 0.25 * forward:
        return {"cause": "slow link", "where": list(max(worst, key=worst.get))}
    stripped = copy.deepcopy(trace)
    for rank in stripped.ranks:
        rank.messages = []
    return _reference()(stripped)


def _milliseconds(trace):
    """Thresholds in milliseconds, tuned on notebook 09's 20 ms forwards: 5 ms per message, 10 ms per stage."""
    fastest = {}
    for (src, dst), v in analysis.link_times(trace).items():
        if v["min_in_flight_s"] is not None:
            cable = (min(src, dst), max(src, dst))
            fastest[cable] = min(fastest.get(cable, v["min_in_flight_s"]), v["min_in_flight_s"])
    if fastest and max(fastest.values()) > 0.005:
        return {"cause": "slow link", "where": list(max(fastest, key=fastest.get))}
    totals = {stage: sum(m.values()) for stage, m in analysis.stage_means(trace).items()}
    stage = max(totals, key=totals.get)
    if totals[stage] - statistics.median(totals.values()) > 0.010:
        return {"cause": "slow stage", "where": stage}
    answer = _reference()(trace)
    return answer if answer["cause"] in ("few micro-batches", "healthy") else {"cause": "healthy", "where": None}


def _rank_whenever_interleaved(trace):
    answer = _reference()(trace)
    if answer["cause"] == "slow stage" and len(analysis.stage_means(trace)) > trace.world_size:
        return {"cause": "slow rank", "where": answer["where"] % trace.world_size}
    return answer


@pytest.fixture(scope="module")
def nb09_cases():
    return nb09.GRADED[0].cases(random.Random(3))


def test_diagnose_is_graded_on_pairs_that_tell_right_from_nearly_right(nb09_cases):
    graded, cases = nb09.GRADED[0], nb09_cases
    assert len(cases) == 16 and len({pair for _, pair in cases}) == 8
    assert graded.score(cases, outputs(graded, _reference(), cases))[0] == 1.0
    for name, wrong in (("1.4x stage threshold", _with_factor(1.4)), ("mean not min", _mean_not_min),
                        ("thresholds in ms", _milliseconds), ("slow rank whenever v > 1", _rank_whenever_interleaved)):
        assert graded.score(cases, outputs(graded, wrong, cases))[0] <= 0.75, name
    for cause in analysis.CAUSES:
        assert graded.score(cases, [{"cause": cause, "where": None}] * len(cases))[0] == 0.0
    assert graded.score(cases, [NOT_IMPLEMENTED] * len(cases))[0] == 0.0


def test_a_pair_earns_the_smaller_credit_of_its_twins(nb09_cases):
    graded, cases = nb09.GRADED[0], nb09_cases
    answers = outputs(graded, _reference(), cases)
    first = cases[0][1]
    half = [{**o, "where": "?"} if pair == first and o["where"] is not None else o for (_, pair), o in zip(cases, answers)]
    assert graded.score(cases, half)[0] == pytest.approx(1 - 0.5 / 8)


def test_every_twin_is_what_was_injected_and_the_draw_is_seeded():
    for kind, make in nb09.TWINS.items():
        (a, want_a), (b, want_b) = make(random.Random(5))
        assert want_a != want_b and a.world_size == b.world_size, kind
    assert nb09.draw_pairs(random.Random(4), 1)[0][0] == nb09.draw_pairs(random.Random(4), 1)[0][0]


def test_notebook_09_solved_full_marks_and_student_zero(tmp_path):
    """Graded on exercise-only copies (tests/exercise_copy.py); nbval runs both notebooks whole (-50 s)."""
    (tmp_path / "solved").mkdir()
    (tmp_path / "student").mkdir()
    solved = grade_notebook(exercise_copy(os.path.join(ROOT, "solutions", "09_bubble_detective.ipynb"),
                                          tmp_path / "solved"), seed=1)
    student = grade_notebook(exercise_copy(os.path.join(ROOT, "notebooks", "09_bubble_detective.ipynb"),
                                           tmp_path / "student"), seed=1)
    assert solved["score"] == solved["max_score"] == 3, solved
    assert student["score"] == 0, student


# ------------------------------------------------------------------ 09: a wrong diagnosis does not bring idle back
def _planted(name, **changes):
    """A run-like object for mystery ``name``: the simulated step with the runtime's overheads (+0.5 ms per action,
    0.8 ms per message), against paced costs with a free link (what ``run.costs`` holds)."""
    settings = detective.settings(name, **changes)
    clean = detective.simulate(name, **changes)
    schedule = labs.make("1f1b", 4, settings["M"])
    real = simulate(schedule, Costs([f + 0.0005 for f in _stage_costs(clean, "F")],
                                    [b + 0.0005 for b in _stage_costs(clean, "B")],
                                    network=settings.get("network"), message_bytes=4096, link_s=0.0008))
    return types.SimpleNamespace(schedule=schedule, costs=Costs(0.02, 0.04), step_traces=[real],
                                 simulated=simulate(schedule, Costs(0.02, 0.04)))


def _stage_costs(trace, kind):
    found = {}
    for events in trace.events:
        for e in events:
            if e.action.kind == kind:
                found[e.action.stage] = e.duration_s
    return [found[s] for s in sorted(found)]


@pytest.mark.parametrize("name,right,wrong", [
    ("A", {"M": 8}, {}),                                  # few micro-batches diagnosed as healthy: nothing changes
    ("B", {"slow_stages": {}}, {"M": 8}),                 # a slow stage diagnosed as few micro-batches
    ("C", {"network": None}, {"slow_stages": {}}),        # a slow link diagnosed as a slow stage
])
def test_after_a_wrong_fix_the_idle_is_not_back_to_the_healthy_pipelines(name, right, wrong):
    healthy = idle_fraction(4, detective.HEALTHY_M)
    assert timing.timing_holds(_planted(name, **right), healthy)
    assert not timing.timing_holds(_planted(name, **wrong), healthy)


def test_the_old_check_against_theory_at_the_current_m_passes_a_wrong_diagnosis():
    """Why 09 compares with the healthy pipeline: mystery A left at M=2 idles 0.60, theory at M=2 is 0.60."""
    unchanged = _planted("A")
    assert timing.timing_holds(unchanged, idle_fraction(4, 2))
    assert not timing.timing_holds(unchanged, idle_fraction(4, detective.HEALTHY_M))


def test_detective_simulate_matches_what_the_mysteries_should_measure():
    steps = {name: round(detective.simulate(name).step_time_s * 1000) for name in detective.NAMES}
    assert steps == {"A": 300, "B": 1280, "C": 980, "D": 380}
    assert detective.simulate("C", network=None).step_time_s == pytest.approx(0.660)
    assert 980 - 660 == round(slow_link_extra_s("1f1b", 4, 8, 2, 0.040) * 1000)


def test_path_verdicts_on_the_simulated_mysteries():
    b = path_summary(critical_path(detective.simulate("B")))
    c = path_summary(critical_path(detective.simulate("C")))
    healthy = path_summary(critical_path(detective.simulate("A", M=8)))
    assert nb09.largest_share(b["by_stage"], 1) and not nb09.largest_share(healthy["by_stage"], 1)
    assert nb09.mostly_on(c["by_link"], (2, 3)) and not nb09.mostly_on(c["by_link"], (0, 1))
    assert nb09.messages_under(healthy["message_s"], 0.660) and not nb09.messages_under(c["message_s"], 0.980)


def test_the_message_share_is_read_on_the_least_disturbed_step():
    """A run whose steps include one with a slow link on its path (as load makes a late receiver look): the quiet
    step is read, and its share passes; a run of only disturbed steps still fails (negative control)."""
    quiet, loud = detective.simulate("A", M=8), detective.simulate("C")
    summary, step_s = nb09.quietest_path(types.SimpleNamespace(step_traces=[loud, quiet, loud]))
    assert step_s == quiet.step_time_s and nb09.messages_under(summary["message_s"], step_s)
    summary, step_s = nb09.quietest_path(types.SimpleNamespace(step_traces=[loud, loud]))
    assert not nb09.messages_under(summary["message_s"], step_s)


def test_a_wrong_diagnosis_on_a_real_mystery_prints_false_real_ranks():
    healthy = idle_fraction(4, detective.HEALTHY_M)
    assert not timing.timing_holds(detective.rerun("A", steps=2), healthy)  # "healthy": M stays 2
    assert timing.timing_holds(detective.rerun("A", M=8, steps=2), healthy)


def test_straggler_fix_and_the_slow_rank_cause():
    assert "straggler" in detective.settings("B", straggler=None)
    assert math.isclose(detective.simulate("A", M=8, straggler=(1, 2.5)).step_time_s,
                        detective.simulate("B").step_time_s)  # one stage per rank: a slow device = a slow stage
