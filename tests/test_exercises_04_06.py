"""Notebooks 04-06: the reworked exercises tell right from nearly right (grader side, no kernel, no process), and the
notebooks' own verdicts print False on planted inputs (their registration is tested in test_verdicts.py)."""
from __future__ import annotations

import random

import pytest

from labs.exercises import nb04
from labs.exercises._common import score_cases
from labs.grading.kernel import plain


def _score(problem, cases, make):
    return score_cases(cases, [plain(make(*case)) for case in cases], problem)


# ---------------------------------------------------------------- 04: 1F1B from its constraints
def _reference_1f1b(P, M):
    return nb04._shaped(P, M, lambda r: P - 1 - r)


def test_04_the_reference_order_scores_full_marks_offline():
    cases = nb04._cases(random.Random(4))
    assert _score(nb04.offline_problem, cases, _reference_1f1b)[0] == 1.0


@pytest.mark.parametrize("name", sorted(nb04.WRONG))
def test_04_every_plausible_mistake_scores_clearly_below_full(name):
    """Negative controls: GPipe, a warm-up one too long or one too short, P-1 everywhere: 0; the uncapped warm-up
    (right whenever M >= P-1) stays well below full."""
    cases = nb04._cases(random.Random(4))
    fraction, message = _score(nb04.offline_problem, cases, nb04.WRONG[name])
    assert fraction <= (0.75 if name == "warm-up not capped at M" else 0.0), (name, fraction, message)


def test_04_messages_name_the_rank_not_the_count():
    too_many = nb04.offline_problem((5, 9), plain(nb04.WRONG["warm-up P-r (one too many)"](5, 9)))
    assert "rank 0 holds 6 micro-batches" in too_many and "P-1-r" not in too_many and "min(" not in too_many
    too_few = nb04.offline_problem((5, 9), plain(nb04.WRONG["warm-up P-2-r (one too few)"](5, 9)))
    assert "GPipe's" in too_few and "waiting" in too_few


def test_04_no_shown_shape_is_graded():
    cases = nb04._cases(random.Random(1))
    assert not set(nb04.SHOWN) & set(cases) and not set(nb04.CHECK_CASES) & set(cases)
    assert set(nb04.REAL_CASES) <= set(cases)


# ---------------------------------------------------------------- 05: interleaving from constraints, peak bytes
from labs.exercises import nb05  # noqa: E402
from labs.schedules import interleaved  # noqa: E402


def test_05_megatron_and_the_lean_warm_up_both_pass_and_every_mistake_scores_low():
    cases = nb05._schedule_cases(random.Random(5))
    megatron = lambda P, M, v: [[str(a) for a in acts] for acts in interleaved(P, M, v)]  # noqa: E731
    lean = lambda P, M, v: nb05.ordered(P, M, v, lambda r: (v - 1) * P + P - 1 - r)  # noqa: E731
    assert _score(nb05.schedule_problem, cases, megatron)[0] == 1.0
    assert _score(nb05.schedule_problem, cases, lean)[0] == 1.0
    for name, wrong in nb05.WRONG_ORDERS.items():
        assert _score(nb05.schedule_problem, cases, wrong)[0] <= 0.25, name
    assert not set(nb05.SHOWN) & set(cases) and nb05.GRADED_REAL_CASE in cases


def test_05_peak_bytes_reference_is_the_measured_walk_and_mistakes_score_zero():
    cases = nb05._bytes_cases(random.Random(7))
    rule = lambda P, M, v, L, b, w: nb05.walk_peaks(interleaved(P, M, v), nb05._rule(P, v, L, b, w))  # noqa: E731
    assert _score(nb05.peak_problem, cases, rule)[0] == 1.0
    for name, wrong in nb05.WRONG_BYTES.items():  # negative controls
        assert _score(nb05.peak_problem, cases, wrong)[0] == 0.0, name
    assert not set(nb05.BYTES_CASES) & set(cases)


def test_05_the_toy_factor_on_the_notebooks_shape():
    """Rank 0 at P=4, 16 layers, v=2 and 4: (1 + (P-1)/(Pv)) * (L + Pv)/(L + P) times 1F1B's bytes (1.65, 1.90)."""
    one = 4 * (16 // 4 + 1) * 8 * 64 * 4  # 1F1B's rank 0: P micro-batches of a 4-layer stage, 5 tensors each
    for v, factor in ((2, 1.65), (4, 1.9)):
        assert abs(nb05.expected_peak_bytes(4, 8, v, 16, 8, 64)[0] / one - factor) < 1e-9


# ---------------------------------------------------------------- 06: bytes for layer types not seen
from labs.exercises import nb06  # noqa: E402
from labs.theory import transformer_layer_bytes  # noqa: E402


def test_06_the_rule_agrees_with_measurement_and_each_mistake_scores_low():
    cases = nb06._cases(random.Random(6))
    assert _score(nb06.bytes_problem, cases, nb06.predict)[0] == 1.0
    for name, wrong in nb06.WRONG.items():
        assert _score(nb06.bytes_problem, cases, wrong)[0] <= 0.5, name
    assert all(case[1] >= 3 for case in cases)


def test_06_full_recompute_keeps_the_whole_input_on_every_tensor_parallel_rank():
    """Korthikanti et al. Table 2: full recompute keeps 2sbh per layer for every t; only the sharded variant divides."""
    args = (2048, 1, 12288, 96)
    assert transformer_layer_bytes(*args, recompute="full", T=8) == transformer_layer_bytes(*args, recompute="full")
    assert transformer_layer_bytes(*args, recompute="full-sharded", T=8) * 8 == transformer_layer_bytes(
        *args, recompute="full")
    assert transformer_layer_bytes(*args, recompute="selective", T=8) * 8 == transformer_layer_bytes(
        *args, recompute="selective")
