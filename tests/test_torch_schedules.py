"""Every schedule class PyTorch ships (torch.distributed.pipelining, torch 2.13), run here (issue 19 §2).

Each class's compute-only order is built for several (P, M, v) (PyTorch's own visualiser does the same, on mock
stages), converted to our lists, validated, simulated and compared action by action with PyTorch's visualiser
spacing; one point per class runs on real ranks with gradients equal to one process; and our zero-bubble lists run on
PyTorch's runtime with the losses of one process. Where PyTorch's order and ours disagree, the test says which side is
wrong and why. PRIVATE API: ``labs.course.torch_orders`` reads underscored torch internals; the first test pins them.
"""
from __future__ import annotations

import pytest

import labs
from labs.course import torch_orders as T
from labs.schedules import Action, ScheduleError, dualpipe_v, dualpipe_v_pairs, gpipe, one_f_one_b, validate, zb_v
from labs.timeline import Costs, simulate

VISUAL = Costs(1.0, 1.0, 1.0)  # the visualiser's widths: F, I, W one slot, B = I + W two


def _all_orders():
    found, refused = [], []
    for name in T.CLASSES:
        for P, M, v in T.points(name):
            try:
                found.append((name, P, M, v, T.torch_order(name, P, M, v)))
            except (ValueError, AssertionError):
                refused.append((name, P, M, v))
    return found, refused


ORDERS, REFUSED = _all_orders()


def _visual_idle(order) -> float:
    """The idle share of PyTorch's visualiser spacing: 1 - busy slots / (ranks x the last slot's end)."""
    starts = T.visualiser_starts(order)
    rows, _ = T.convert(order)
    end = max(starts[a] + T.WIDTH[a.kind] for a in starts)
    busy = sum(T.WIDTH[a.kind] for a in starts)
    return 1 - busy / (len(rows) * end)


def test_private_api_we_rely_on():
    from torch.distributed.pipelining.schedules import _Action, _ComputationType
    assert [_ComputationType(k).value for k in "FIWB"] == ["F", "I", "W", "B"]
    assert _Action._fields[:3] == ("stage_index", "computation_type", "microbatch_index")
    # 25 shapes refused by the classes themselves: Interleaved1F1B and InterleavedZeroBubble where M is not a
    # multiple of their rounds (8 each), DualPipeV below M = 2P (9)
    assert len(ORDERS) == 185 and len(REFUSED) == 25


def test_every_order_but_1f1b_validates_and_we_simulate_what_the_visualiser_draws():
    agree = 0
    for name, P, M, v, order in ORDERS:
        if name == "1F1B":
            continue  # PyTorch's order is wrong: next test
        rows, together = T.convert(order)
        validate(rows, M=M, num_stages=P * v)
        trace = simulate(rows, VISUAL, together=together)
        assert {e.action: e.start_s for r in trace.ranks for e in r.events} == T.visualiser_starts(order), (name, P, M)
        assert trace.idle_fraction == pytest.approx(_visual_idle(order)), (name, P, M, v)
        agree += 1
    assert agree == 164  # every valid order: each action starts in the same slot, so the idle shares are equal


def test_the_visualiser_comparison_can_fail():
    """Negative controls: without the overlapped pairs DualPipeV's starts differ; with a link cost ZBV's do."""
    order = T.torch_order("DualPipeV", 3, 6, 2)
    rows, together = T.convert(order)
    trace = simulate(rows, VISUAL)  # pairs ignored
    assert {e.action: e.start_s for r in trace.ranks for e in r.events} != T.visualiser_starts(order)
    order = T.torch_order("ZBVZeroBubble", 3, 6, 2)
    trace = simulate(T.convert(order)[0], Costs(1.0, 1.0, 1.0, link_s=1.0))
    assert {e.action: e.start_s for r in trace.ranks for e in r.events} != T.visualiser_starts(order)
    assert trace.idle_fraction != pytest.approx(_visual_idle(order))


def test_pytorch_1f1b_order_is_wrong_on_its_last_rank():
    """PyTorch's side is wrong: ``Schedule1F1B._get_pipeline_order`` (torch 2.13) increments the forward counter
    before its first use on the last rank, which has no warm-up forwards, so that rank's forwards are numbered 1..M.
    Our validator refuses every one of the 21 orders; with the off-by-one undone each equals our one_f_one_b. Only the
    visualiser and exporters read this order: the class's own ``_step_microbatches`` does not, so training is fine."""
    seen = 0
    for name, P, M, v, order in ORDERS:
        if name != "1F1B":
            continue
        rows, _ = T.convert(order)
        with pytest.raises(ScheduleError, match=f"{P - 1}F{M}"):
            validate(rows, M=M)
        assert sorted(a.microbatch for a in rows[-1] if a.kind == "F") == list(range(1, M + 1))
        fixed = [[Action(a.stage, a.kind, a.microbatch - (r == P - 1 and a.kind == "F")) for a in row]
                 for r, row in enumerate(rows)]
        assert fixed == one_f_one_b(P, M)
        seen += 1
    assert seen == 21


def test_where_we_build_the_same_schedule_the_lists_are_equal():
    for name, P, M, v, order in ORDERS:
        rows, together = T.convert(order)
        if name == "GPipe":
            assert rows == gpipe(P, M)
        if name == "DualPipeV":
            assert rows == dualpipe_v(P, M) and together == dualpipe_v_pairs(P, M)


@pytest.mark.parametrize("costs", [(1, 1, 1), (1, 1, 0.5), (1, 1.5, 0.5), (2, 1, 1), (1, 2, 1), (1, 1, 2)])
def test_the_authors_zb_v_is_never_slower_than_pytorchs_zbv(costs):
    """Neither side is wrong, but PyTorch's ZBVZeroBubble is a fixed pattern built for max(2P-1, M) micro-batches
    with the missing ones blanked, which leaves gaps at small M (its docstring: zero bubble only at F = B = W). The
    authors' order, built for the actual costs (labs.schedules.zb_v), is never slower and is faster at small M."""
    faster = []
    for name, P, M, v, order in ORDERS:
        if name == "ZBVZeroBubble":
            theirs = simulate(T.convert(order)[0], Costs(*costs)).step_time_s
            ours = simulate(zb_v(P, M, costs), Costs(*costs)).step_time_s
            assert ours <= theirs + 1e-9, (P, M)
            if ours < theirs - 1e-9:
                faster.append((P, M))
    if costs == (1, 1, 1):  # equal from M = 2P-1 on, where the pattern is complete
        assert faster == [(2, 2), (3, 3), (4, 4), (4, 5)]


REAL = [("GPipe", 3, 4, 1), ("1F1B", 3, 4, 1), ("Interleaved1F1B", 2, 4, 2), ("LoopedBFS", 2, 3, 2),
        ("InterleavedZeroBubble", 2, 4, 2), ("ZBVZeroBubble", 2, 4, 2), ("DualPipeV", 2, 4, 2)]


@pytest.mark.parametrize("name,P,M,v", REAL)
def test_every_class_runs_on_our_ranks_with_one_process_gradients(name, P, M, v):
    rows, _ = T.convert(T.torch_order(name, P, M, v))
    if name == "1F1B":  # PyTorch's off-by-one undone (see above)
        rows = [[Action(a.stage, a.kind, a.microbatch - (r == P - 1 and a.kind == "F")) for a in row]
                for r, row in enumerate(rows)]
    run = labs.run_pipeline(rows, P=P, M=M, layers=2 * P * v, batch_size=4 * M, pace_ms=None, warmup_steps=0,
                            steps=1)
    assert run.max_grad_error < 1e-6


@pytest.mark.parametrize("name", ["zb-h2", "zb-v", "dualpipe-v"])
def test_our_lists_run_on_pytorchs_runtime_with_one_process_losses(name):
    from labs.course.capstone import train_reference
    from labs.course.torch_bridge import train_torch
    P, M = 2, 4
    theirs = train_torch(name, P=P, M=M, v=1, steps=2, batch_size=8)
    reference = train_reference(steps=2, M=M, batch_size=8)
    assert max(abs(a - b) for a, b in zip(theirs, reference)) < 1e-5
