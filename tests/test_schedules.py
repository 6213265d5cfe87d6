"""Schedules as data: generators, parsing, validation, the lowering to sends and receives, rendering (no processes)."""

import pytest

from labs.schedules import (RECV, SEND, Action, Comm, ScheduleError, check_in_order, consumer, dependencies, gpipe,
                            input_source, interleaved, lower, make, naive, one_f_one_b, output_target, parse,
                            parse_action, producer, shape, stage_owners, validate, zb_v)
from labs.viz.text import render

COMBOS = [(name, P, M, v) for P in range(1, 7) for M in range(1, 13)
          for name, v in [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("interleaved", 3), ("interleaved", 4)]
          if not (name == "interleaved" and M % P)]


def test_action_prints_and_parses_in_pytorch_notation():
    assert str(Action(2, "F", 5)) == "2F5"
    assert parse_action("2F5") == Action(2, "F", 5)
    assert parse_action(" 10B12 ") == Action(10, "B", 12)
    assert parse_action("0W3").kind == "W"
    for bad in ["F5", "2X5", "2F", "", "a2F5"]:
        with pytest.raises(ScheduleError, match="cannot read action"):
            parse_action(bad)


def test_parse_accepts_strings_per_rank():
    assert parse(["0F0 0B0", ["1F0", "1B0"]]) == naive(2)


@pytest.mark.parametrize("name,P,M,v", COMBOS)
def test_every_generated_schedule_validates_and_runs_each_action_once(name, P, M, v):
    schedule = make(name, P, M, v)
    validate(schedule, M=M, P=P)
    actions = [a for acts in schedule for a in acts]
    assert len(actions) == len(set(actions)) == 2 * P * v * M
    assert shape(schedule) == (P, P * v, M)
    assert all(owner == s % P for s, owner in stage_owners(schedule).items())


def test_gpipe_runs_all_forwards_then_all_backwards():
    assert [str(a) for a in gpipe(2, 3)[1]] == ["1F0", "1F1", "1F2", "1B0", "1B1", "1B2"]


def test_1f1b_warms_up_with_p_minus_1_minus_r_forwards_and_the_last_stage_alternates():
    schedule = one_f_one_b(4, 8)
    for r, actions in enumerate(schedule):
        first_backward = next(i for i, a in enumerate(actions) if a.kind == "B")
        assert first_backward == 4 - 1 - r + 1
    assert [str(a) for a in schedule[3][:6]] == ["3F0", "3B0", "3F1", "3B1", "3F2", "3B2"]


def test_interleaved_places_stage_s_on_rank_s_mod_p():
    schedule = interleaved(4, 8, 2)
    assert {a.stage for a in schedule[1]} == {1, 5}


@pytest.mark.parametrize("call,message", [
    (lambda: gpipe(4, 0), "M must be a whole number >= 1"),
    (lambda: one_f_one_b(0, 4), "pipeline ranks P must be"),
    (lambda: make("zigzag", 4, 4), "unknown schedule 'zigzag'"),
    (lambda: make("gpipe", 4, 4, 2), "virtual stages v=2 needs --schedule interleaved"),
    (lambda: make("interleaved", 4, 8, 0), "v must be a whole number >= 1"),
    (lambda: make("interleaved", 4, 8, 1), "needs v >= 2"),
    (lambda: make("interleaved", 4, 6, 2), "choose M as a multiple of 4"),
    (lambda: make("naive", 4, 4), "runs one batch"),
])
def test_bad_arguments_say_what_to_change(call, message):
    with pytest.raises(ScheduleError, match=message):
        call()


def test_validate_rejects_missing_repeated_and_misordered_work():
    with pytest.raises(ScheduleError, match="1B1 is missing: rank 1 never runs it"):
        validate([["0F0", "0F1", "0B0", "0B1"], ["1F0", "1F1", "1B0"]])
    with pytest.raises(ScheduleError, match="rank 0 runs 0F0 twice"):
        validate([["0F0", "0F0", "0B0"], ["1F0", "1B0"]])
    with pytest.raises(ScheduleError, match="rank 0 runs 0B0 before 0F0"):
        validate([["0B0", "0F0"], ["1F0", "1B0"]])
    with pytest.raises(ScheduleError, match="stage 1 appears on rank 0 and on rank 1"):
        validate([["0F0", "1F0", "0B0"], ["1B0"]])
    with pytest.raises(ScheduleError, match="but the pipeline has P=3"):
        validate(gpipe(4, 2), P=3)


def test_validate_names_the_rank_and_action_a_deadlock_waits_on():
    # Rank 1 wants micro-batch 1 first, rank 0 insists on finishing micro-batch 0's backward first.
    broken = [["0F0", "0B0", "0F1", "0B1"], ["1F1", "1B1", "1F0", "1B0"]]
    with pytest.raises(ScheduleError) as error:
        validate(broken)
    text = str(error.value)
    assert "deadlocks" in text
    assert "rank 0 waits forever on 0B0: it needs 1B0 (rank 1, itself waiting at 1F1)" in text
    assert "rank 1 waits forever on 1F1: it needs 0F1 (rank 0, itself waiting at 0B0)" in text


def test_render_matches_the_seed_style():
    assert render(gpipe(2, 2)) == "rank 0: F0 F1 -- -- B0 B1\nrank 1: -- F0 F1 B0 B1 --"
    assert render(interleaved(2, 2, 2)).splitlines()[0].startswith("rank 0: F0.0 F1.0 F0.1 F1.1")


def test_hundreds_of_random_orders_either_validate_or_explain():
    import random
    rng = random.Random(0)
    for _ in range(300):
        P, M = rng.randint(1, 4), rng.randint(1, 4)
        schedule = [acts[:] for acts in gpipe(P, M)]
        for acts in schedule:
            rng.shuffle(acts)
        try:
            validate(schedule)
        except ScheduleError as error:
            assert "rank" in str(error)


# ------------------------------------------------------------------ the lowering: one rule for where messages go
def test_each_action_has_one_source_and_one_target_stage():
    assert (input_source(Action(2, "F", 5), 4), output_target(Action(2, "F", 5), 4)) == (1, 3)
    assert (input_source(Action(2, "B", 5), 4), output_target(Action(2, "B", 5), 4)) == (3, 1)
    assert input_source(Action(0, "F", 0), 4) is None and output_target(Action(3, "F", 0), 4) is None
    assert input_source(Action(3, "B", 0), 4) is None and output_target(Action(0, "B", 0), 4) is None
    assert input_source(Action(1, "W", 0), 4) is None and output_target(Action(1, "W", 0), 4) is None
    assert producer(Action(2, "B", 5), 4) == Action(3, "B", 5) and consumer(Action(2, "F", 5), 4) == Action(3, "F", 5)
    assert dependencies(Action(1, "B", 2), 4) == [Action(1, "F", 2), Action(2, "B", 2)]
    assert dependencies(Action(1, "W", 2), 4) == [Action(1, "I", 2)]  # W needs its own stage's input gradient
    assert (input_source(Action(2, "I", 5), 4), output_target(Action(2, "I", 5), 4)) == (3, 1)


@pytest.mark.parametrize("name,P,M,v", [c for c in COMBOS if c[1] > 1][::7] + [("zb-v", 3, 4, 2), ("zb-h1", 4, 5, 1)])
def test_lowering_pairs_every_send_with_one_receive(name, P, M, v):
    """Every message that crosses ranks is sent once and received once, next to the action that makes or uses it."""
    schedule = make(name, P, M, v)
    sends, receives = {}, {}
    for rank, ops in enumerate(lower(schedule)):
        assert [op for op in ops if not isinstance(op, Comm)] == schedule[rank]  # compute order kept
        for i, op in enumerate(ops):
            if isinstance(op, Comm):
                (sends if op.op == SEND else receives)[op.message] = (rank, op.peer)
                if op.op == SEND:  # right after its producer (receives the lowering posts early may sit between)
                    j = ops.index(op.action)
                    assert all(isinstance(x, Comm) and x.op == RECV for x in ops[j + 1:i])
                else:  # no later than the action that consumes it
                    assert ops.index(op.action) > i
    assert sends == {message: (b, a) for message, (a, b) in receives.items()}
    if name != "zb-v":  # every boundary between stages crosses ranks: two messages per micro-batch
        assert len(sends) == 2 * (v * P - 1) * M


def test_lower_names_ops_as_pytorch_does_and_local_messages_stay_local():
    assert [[str(op) for op in ops] for ops in lower(naive(2))] == [["0F0", "0SEND_F0", "0RECV_B0", "0B0"],
                                                                    ["1RECV_F0", "1F0", "1B0", "1SEND_B0"]]
    assert not any(isinstance(op, Comm) for op in lower(interleaved(1, 2, 2))[0])  # both chunks on one rank
    comms = [op for ops in lower(zb_v(2, 2)) for op in ops if isinstance(op, Comm)]
    assert comms and all({op.action.stage, op.message.stage} != {1, 2} for op in comms)  # stages 1, 2: rank 1, local


def test_check_in_order_reads_the_lowering_and_accepts_strings():
    check_in_order([[str(a) for a in acts] for acts in one_f_one_b(4, 8)])
    crossing = [["0F0", "0F1", "0B0", "0B1"], ["1F1", "1F0", "1B0", "1B1"]]
    check_in_order(crossing)  # valid, consumed out of send order: the lowering posts 1F0's receive early
    assert [str(op) for op in lower(crossing)[1]][:3] == ["1RECV_F0", "1RECV_F1", "1F1"]
