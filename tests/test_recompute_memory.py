"""Recompute on real ranks, measured by the runtime's memory ledger (notebook 06): a checkpointed stage keeps only
its input per micro-batch held, and each backward briefly holds that micro-batch's rebuilt activations on top.

The verdicts the notebook prints (``labs.exercises.nb06.held_cost``, ``peaks_are``) are fed the measured bytes and,
as negative controls, planted wrong inputs (the run without recompute, a prediction without the transient)."""
from __future__ import annotations

import pytest

import labs
from labs.errors import ModelError
from labs.exercises.nb06 import held_cost, peaks_are
from labs.models.memory import RecomputedStages

P, MB, L = 4, 8, 16
K, T = L // P, MB * 64 * 4
LAST = [r == P - 1 for r in range(P)]
PLAIN_C = [(K + 2 if last else K + 1) * T for last in LAST]
INPUT_C = [(3 if last else 1) * T for last in LAST]
REBUILT_T = [(K - 2 if last else K) * T for last in LAST]


def _activations(model, schedule: str, M: int) -> list:
    run = labs.run_pipeline(schedule, P=P, M=M, batch_size=MB * M, model=model, pace_ms=None, warmup_steps=0,
                            steps=1)
    assert run.max_grad_error < 1e-5  # checkpointing changes no gradient
    return [r_mem["category_peak_bytes"]["activations"] for r_mem in run.trace.memory]


@pytest.fixture(scope="module")
def measured() -> dict:
    found = {}
    for name, model in (("plain", labs.ToyModel(L, 64)), ("recompute", RecomputedStages(labs.ToyModel(L, 64), P)),
                        ("non-reentrant", RecomputedStages(labs.ToyModel(L, 64), P, reentrant=False))):
        for schedule, M in (("gpipe", 4), ("gpipe", 8), ("1f1b", 8)):
            found[name, schedule, M] = _activations(model, schedule, M)
    return found


def _gpipe(measured, name) -> dict:
    return {M: measured[name, "gpipe", M] for M in (4, 8)}


def test_a_held_microbatch_keeps_only_its_stages_input(measured):
    assert held_cost(_gpipe(measured, "recompute"), INPUT_C)
    assert held_cost(_gpipe(measured, "plain"), PLAIN_C)
    # negative controls: the run without recompute is not "input only", and the recomputed one is not k+1 tensors
    assert not held_cost(_gpipe(measured, "plain"), INPUT_C)
    assert not held_cost(_gpipe(measured, "recompute"), PLAIN_C)


def test_each_backward_holds_one_microbatch_rebuilt_on_top(measured):
    for M in (4, 8):
        assert peaks_are(measured["recompute", "gpipe", M], [M] * P, INPUT_C, REBUILT_T)
        # negative controls: without the transient, and the run without recompute
        assert not peaks_are(measured["recompute", "gpipe", M], [M] * P, INPUT_C, [0] * P)
        assert not peaks_are(measured["plain", "gpipe", M], [M] * P, INPUT_C, REBUILT_T)
    held = labs.simulate(labs.one_f_one_b(P, 8)).peak_activations
    assert held == [4, 3, 2, 1]
    assert peaks_are(measured["recompute", "1f1b", 8], held, INPUT_C, REBUILT_T)
    assert peaks_are(measured["plain", "1f1b", 8], held, PLAIN_C, [0] * P)
    assert not peaks_are(measured["recompute", "1f1b", 8], held, PLAIN_C, [0] * P)


def test_the_non_reentrant_form_keeps_what_it_rebuilds_outside_autograds_saved_tensors(measured):
    """The notebook's aside: PyTorch's default form holds the rebuilt tensors in its own frame, so the ledger's
    activations are the held inputs alone (the rebuilt ones are filed as temporaries)."""
    for M in (4, 8):
        assert peaks_are(measured["non-reentrant", "gpipe", M], [M] * P, INPUT_C, [0] * P)
        assert not peaks_are(measured["non-reentrant", "gpipe", M], [M] * P, INPUT_C, REBUILT_T)


def test_recomputed_stages_is_the_toy_model_cut_and_refuses_more_stages_than_layers():
    model = RecomputedStages(labs.ToyModel(8, 64), stages=4)
    assert model.num_layers == len(model.layers()) == 4
    assert model.batch(16)[0].equal(labs.ToyModel(8, 64).batch(16)[0])
    with pytest.raises(ModelError, match="at least one layer"):
        RecomputedStages(labs.ToyModel(2, 64), stages=4)
