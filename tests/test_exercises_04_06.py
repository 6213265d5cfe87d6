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
