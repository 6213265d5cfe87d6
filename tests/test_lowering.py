"""The lowering places every send and receive so that in-order (NCCL) matching is right for every valid schedule:
every generator and PyTorch's own orders, checked for first in, first out, one order per pair, a model of NCCL's
streams, and receive buffers that do not grow with M; planted weaker placements fail (no processes)."""
import pytest

from labs.schedules import (RECV, SEND, Comm, ScheduleError, check_blocking_in_order, check_in_order, check_lowered,
                            check_pair_order, lower, make, message_order, receive_buffers_peak, validate, zb_v_greedy)
from tests.lowering_models import lower_at_consumer, lower_fifo_only, lower_up_front, run_streams
from tests.torch_orders import points as torch_points


def _generator_points():
    for P in (1, 2, 3, 4):
        yield "naive", P, 1, 1
        for M in range(P, 2 * P + 3):
            for name, v in (("gpipe", 1), ("1f1b", 1), ("zb-h1", 1), ("zb-h2", 1), ("zb-v", 2), ("zb-v-greedy", 2),
                            ("dualpipe-v", 2), ("interleaved", 2), ("interleaved", 3)):
                if (name != "interleaved" or M % P == 0) and (name != "dualpipe-v" or M >= 2 * P):
                    yield name, P, M, v


def _build(name, P, M, v):
    """``make``, and the greedy ZB-V (not offered by name)."""
    return zb_v_greedy(P, M) if name == "zb-v-greedy" else make(name, P, M, v)


def _well_lowered(schedule):
    """Compute order kept; every remote message sent once right after its producer, received once before its user;
    first in, first out per pair; one order per pair; NCCL's stream model runs it per pair, and per rank for the
    "rank" lowering."""
    schedule = validate(schedule)
    lowered = lower(schedule)
    sent, posted = [], []
    for actions, ops in zip(schedule, lowered):
        assert [op for op in ops if not isinstance(op, Comm)] == actions
        for i, op in enumerate(ops):
            if isinstance(op, Comm) and op.op == SEND:
                sent.append(op.message)
                j = ops.index(op.action)
                assert all(isinstance(x, Comm) and x.op == RECV for x in ops[j + 1:i])
            elif isinstance(op, Comm):
                posted.append(op.message)
                assert ops.index(op.action) > i
    assert sorted(sent) == sorted(posted) and len(set(sent)) == len(sent)
    check_lowered(lowered)
    check_pair_order(lowered)
    run_streams(lowered, "pair")
    run_streams(lower(schedule, "rank"), "rank")


@pytest.mark.parametrize("name,P,M,v", list(_generator_points()))
def test_every_generator_lowers_to_lists_that_run_in_order(name, P, M, v):
    schedule = _build(name, P, M, v)
    _well_lowered(schedule)
    check_in_order([[str(a) for a in actions] for actions in schedule])  # strings, as every entry point takes


def test_pytorchs_orders_lower_to_lists_that_run_in_order():
    """ZBVZeroBubble, DualPipeV, InterleavedZeroBubble, Interleaved1F1B, LoopedBFS and GPipe at P = 2..4 and every M
    they accept from P to P+6: 109 schedules. Before the lowering, the in-order check refused ZBV at 18 of 21."""
    count = 0
    for name, P, M, schedule in torch_points():
        _well_lowered(schedule)
        check_in_order(schedule)
        count += 1
    assert count == 109


def test_check_in_order_accepts_strings_and_every_zb_v():
    for P in (2, 3, 4):
        for M in range(P, P + 7):
            check_in_order([[str(a) for a in actions] for actions in make("zb-v", P, M, 2)])
    check_in_order(["0F0 0F1 0B0 0B1", "1F1 1F0 1B0 1B1"])  # issue 7's crossing: valid, so it runs in order too


@pytest.mark.parametrize("name,v,expected", [
    ("gpipe", 1, [1, 1, 1, 1]), ("1f1b", 1, [1, 1, 1, 1]), ("zb-h1", 1, [1, 1, 1, 1]),
    ("interleaved", 2, [1, 2, 2, 3]), ("zb-v", 2, [1, 2, 2, 2]), ("zb-h2", 1, [1, 2, 2, 2]),
    ("zb-v-greedy", 2, [1, 2, 2, 2]), ("dualpipe-v", 2, [1, 2, 2, 2])])
def test_receive_buffers_posted_at_once_do_not_grow_with_M(name, v, expected):
    for M in (8, 16, 32):
        assert receive_buffers_peak(lower(_build(name, 4, M, v))) == expected
    assert receive_buffers_peak(lower_up_front(_build(name, 4, 16, v)))[1] == 2 * 16 * v  # negative control


def test_the_global_order_is_a_unit_time_run():
    order = message_order(make("1f1b", 2, 2))
    assert [str(m) for m in sorted(order, key=order.get)] == ["1F0", "1F1", "0B0", "0B1"]
    with pytest.raises(ScheduleError, match="cannot finish"):
        message_order([["0F0", "0B0"], ["1B0", "1F0"]])


# ---------------------------------------------------------------- negative controls


def _passes(check, lowered) -> bool:
    try:
        check(lowered)
        return True
    except ScheduleError:
        return False


def test_receives_at_their_consumer_fail_first_in_first_out_on_zb_v():
    """The placement the in-order transport used before: issue 20's count, 18 of 21 zb-v points."""
    fails = sum(not _passes(check_lowered, lower_at_consumer(make("zb-v", P, M, 2)))
                for P in (2, 3, 4) for M in range(P, P + 7))
    assert fails == 18
    with pytest.raises(ScheduleError, match="first in, first out|hang"):
        run_streams(lower_at_consumer(make("zb-v", 4, 8, 2)), "pair")


def test_two_swapped_receives_fail_the_check():
    lowered = lower(make("zb-v", 4, 8, 2))
    ops = lowered[1]
    i = next(k for k in range(len(ops) - 1) if all(isinstance(o, Comm) and o.op == RECV for o in ops[k:k + 2])
             and ops[k].peer == ops[k + 1].peer)
    ops[i], ops[i + 1] = ops[i + 1], ops[i]
    with pytest.raises(ScheduleError, match="first in, first out"):
        check_lowered(lowered)


def test_first_in_first_out_alone_hangs_a_stream_per_pair_on_1f1b():
    """Receives in send order but the pair's two directions not kept in one order: right on gloo, but a stream
    that runs a pair's ops one after another (NCCL) waits on itself in 1F1B's exchange."""
    lowered = lower_fifo_only(make("1f1b", 4, 8))
    check_lowered(lowered)
    with pytest.raises(ScheduleError, match="order their messages differently"):
        check_pair_order(lowered)
    with pytest.raises(ScheduleError, match="hang"):
        run_streams(lowered, "pair")


def test_one_order_per_pair_is_not_enough_for_one_stream_per_rank():
    schedule = make("interleaved", 4, 8, 2)
    with pytest.raises(ScheduleError, match="hang"):
        run_streams(lower(schedule, "peer"), "rank")
    run_streams(lower(schedule, "rank"), "rank")


def test_blocking_in_order_needs_consumption_in_send_order():
    check_blocking_in_order(make("1f1b", 4, 8))
    with pytest.raises(ScheduleError, match="blocking sends and receives in action order"):
        check_blocking_in_order(make("zb-v", 4, 8, 2))
    with pytest.raises(ScheduleError, match="rank 1 runs 1F1 before 1F0"):
        check_blocking_in_order(["0F0 0F1 0B0 0B1", "1F1 1F0 1B0 1B1"])
