"""Every schedule the validator accepts runs on in-order (first in, first out) matching with exact gradients: gloo's
emulation of NCCL (``transport="in_order"``) for every generator and for PyTorch's own orders; the receive placement
that the in-order transport used before the lowering computes wrong gradients (negative control)."""
import pytest

import labs
import labs.runtime.step
from labs import run_pipeline
from labs.schedules import Action, ScheduleError, check_lowered, lower, zb_v_greedy
from tests.lowering_models import lower_at_consumer
from tests.test_torch_schedules import REAL, T
from tests.torch_orders import course_schedule

EXACT = 1e-5
QUICK = dict(pace_ms=None, steps=1, warmup_steps=0, memory=False, transport="in_order")


@pytest.mark.parametrize("name,P,M,v", [("naive", 4, 1, 1), ("gpipe", 4, 8, 1), ("1f1b", 4, 8, 1),
                                        ("interleaved", 4, 8, 2), ("zb-h1", 4, 8, 1), ("zb-h2", 4, 8, 1),
                                        ("zb-v", 4, 8, 2), ("zb-v", 2, 5, 2), ("zb-v", 3, 7, 2),
                                        ("zb-v-greedy", 4, 8, 2), ("zb-v-greedy", 3, 5, 2), ("dualpipe-v", 4, 8, 2),
                                        ("dualpipe-v", 2, 5, 2)])
def test_every_generator_runs_in_order_with_exact_gradients(name, P, M, v):
    schedule = zb_v_greedy(P, M) if name == "zb-v-greedy" else name
    run = run_pipeline(schedule, P=P, M=M, v=v, layers=4 * P, batch_size=4 * M, **QUICK)
    assert run.max_grad_error <= EXACT, run.max_grad_error


@pytest.mark.parametrize("name,P,M,v", REAL)
def test_every_order_of_the_torch_schedule_tests_runs_in_order(name, P, M, v):
    """The seven classes of tests/test_torch_schedules.py, four kinds kept (DualPipeV mixes B with I and W)."""
    rows, _ = T.convert(T.torch_order(name, P, M, v))
    if name == "1F1B":  # PyTorch's off-by-one on its last rank undone, as there
        rows = [[Action(a.stage, a.kind, a.microbatch - (r == P - 1 and a.kind == "F")) for a in row]
                for r, row in enumerate(rows)]
    run = run_pipeline([[str(a) for a in row] for row in rows], layers=2 * P * v, batch_size=4 * M, **QUICK)
    assert run.max_grad_error <= EXACT, run.max_grad_error


@pytest.mark.parametrize("name,P,M", [("ZBVZeroBubble", 4, 8), ("ZBVZeroBubble", 2, 5), ("DualPipeV", 3, 7),
                                      ("InterleavedZeroBubble", 2, 4), ("Interleaved1F1B", 4, 8),
                                      ("LoopedBFS", 4, 4)])
def test_pytorchs_orders_run_in_order_with_exact_gradients(name, P, M):
    schedule = course_schedule(name, P, M, 2)
    run = run_pipeline(schedule, layers=4 * P, batch_size=4 * M, **QUICK)
    assert run.max_grad_error <= EXACT, run.max_grad_error
    tagged = run_pipeline(schedule, layers=4 * P, batch_size=4 * M, **{**QUICK, "transport": "tagged"})
    assert tagged.max_grad_error <= EXACT


CROSSING = [["0F0", "0F1", "0B0", "0B1"], ["1F1", "1F0", "1B0", "1B1"]]  # rank 1 consumes 0F1's message first


def test_the_crossing_schedule_runs_in_order_and_its_planted_lowering_is_refused():
    run = run_pipeline(CROSSING, layers=2, batch_size=4, **QUICK)
    assert run.max_grad_error <= EXACT
    with pytest.raises(ScheduleError, match="first in, first out"):  # negative control: receives in consumer order
        check_lowered(lower_at_consumer(CROSSING))
    check_lowered(lower(CROSSING))


def test_receives_placed_at_their_consumer_give_wrong_gradients_in_order(monkeypatch):
    """Negative control: the same run with each receive posted right before the action that consumes it (the
    in-order transport before the lowering) takes micro-batches' tensors in the wrong order on zb-v."""
    ok = run_pipeline("zb-v", P=4, M=8, v=2, layers=16, batch_size=32, **QUICK)
    assert ok.max_grad_error <= EXACT
    monkeypatch.setattr(labs.runtime.step, "lowered", lower_at_consumer)  # the forked ranks inherit it
    wrong = run_pipeline("zb-v", P=4, M=8, v=2, layers=16, batch_size=32, **QUICK)
    assert wrong.max_grad_error > 1e-3, wrong.max_grad_error
