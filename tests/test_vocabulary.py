"""PyTorch's four action kinds (F, I, W, B): reading them, the old course notation, the rules, mixed schedules.

No process starts here except in the last test, which runs a schedule mixing full and split backwards on real ranks
(DualPipeV-style) and compares its gradients with one process."""
from __future__ import annotations

import pytest

from labs.schedules import (Action, ScheduleError, backward_kinds, consumer, dependencies, is_old_notation,
                            one_f_one_b, parse, producer, to_text, uses_split_backward, validate, zb_h1)
from labs.timeline import Costs, simulate


def _mixed(P: int = 2, M: int = 2) -> list[list[str]]:
    """1F1B where micro-batch 0 runs a full B and the others I then W (right after): both forms in one list."""
    rows = []
    for acts in one_f_one_b(P, M):
        row = []
        for a in acts:
            if a.kind == "B" and a.microbatch > 0:
                row += [f"{a.stage}I{a.microbatch}", f"{a.stage}W{a.microbatch}"]
            else:
                row.append(str(a))
        rows.append(row)
    return rows


def test_the_four_kinds_read_and_write_as_pytorch_does():
    assert parse([["0F0", "0I0", "0W0", "0F1", "0B1"]]) == [[Action(0, "F", 0), Action(0, "I", 0),
                                                               Action(0, "W", 0), Action(0, "F", 1),
                                                               Action(0, "B", 1)]]
    assert to_text([["0F0", "0I0", "0W0"]]) == [["0F0", "0I0", "0W0"]]
    with pytest.raises(ScheduleError, match="F/I/W/B"):
        parse([["0X0"]])


def test_old_course_lists_are_read_with_their_b_as_the_input_gradient():
    old = [["0F0", "0B0", "0W0"]]
    assert is_old_notation(parse(old, notation="torch"))
    assert parse(old) == [[Action(0, "F", 0), Action(0, "I", 0), Action(0, "W", 0)]]
    assert validate(old) == parse(old)
    # the same list read literally is refused: a full B and a W on one micro-batch
    with pytest.raises(ScheduleError, match="runs both 0B0"):
        validate(old, notation="torch")
    # a list that has an I is never read the old way, so a new list cannot be misread
    mixed = _mixed()
    assert not is_old_notation(parse(mixed)) and {a.kind for acts in parse(mixed) for a in acts} == set("FIWB")
    with pytest.raises(ScheduleError, match="no I actions"):
        parse(mixed, notation="course-split")
    # a list without W's is a fused schedule whatever the notation says: its B's stay B's
    assert parse(one_f_one_b(2, 2)) == one_f_one_b(2, 2)


def test_every_rule_refuses_what_breaks_it():
    cases = [
        ([["0F0", "0I0"]], "0W0 is missing"),                                   # I without W
        ([["0F0", "0W0"]], "0I0 is missing"),                                   # W without I (read literally: I)
        ([["0F0"]], "0B0 is missing"),                                          # no backward at all
        ([["0F0", "0B0", "0I0", "0W0"]], "runs both 0B0"),                      # both forms for one micro-batch
        ([["0F0", "0W0", "0I0"]], "runs 0W0 before 0I0"),                       # W before its I
        ([["0F0", "0I0", "0W0", "0I0"]], "twice"),
        ([["0F0", "0I0", "0W0"], ["0F1", "0I1", "0W1"]], "stage 0 appears on rank 0 and on rank 1"),
        ([["0F0", "0I0", "0W0"], ["1I0", "1W0", "1F0"]], "runs 1I0 before 1F0"),
        ([["0F0", "0I0", "0W0", "0F1", "0I1", "0W1"], ["1F1", "1I1", "1W1", "1F0", "1I0", "1W0"]], "deadlocks"),
    ]
    for schedule, message in cases:
        with pytest.raises(ScheduleError, match=message):
            validate(schedule, notation="torch")


def test_a_mixed_schedule_sends_each_gradient_from_whichever_action_the_schedule_runs():
    rows = parse(_mixed(2, 2))
    kinds = backward_kinds(rows)
    assert kinds == {(0, 0): "B", (1, 0): "B", (0, 1): "I", (1, 1): "I"}
    assert producer(Action(0, "B", 0), 2, kinds) == Action(1, "B", 0)
    assert producer(Action(0, "I", 1), 2, kinds) == Action(1, "I", 1)
    assert consumer(Action(1, "I", 1), 2, kinds) == Action(0, "I", 1)
    assert dependencies(Action(0, "W", 1), 2, kinds) == [Action(0, "I", 1)]
    assert uses_split_backward(rows) and not uses_split_backward(one_f_one_b(2, 2))
    validate(rows)


def test_costs_charge_a_full_backward_its_input_and_weight_parts():
    costs = Costs(1.0, 1.0, 1.0)
    assert [costs.of(k, 0) for k in "FIWB"] == [1.0, 1.0, 1.0, 2.0]
    # the same Costs gives fused and split schedules the same work per rank: M (F + I + W)
    fused, split = simulate(one_f_one_b(4, 8), costs), simulate(zb_h1(4, 8), costs)
    assert [r.busy_s for r in fused.ranks] == [r.busy_s for r in split.ranks] == [24.0] * 4
    assert (fused.step_time_s, split.step_time_s) == (33.0, 27.0)
    mixed = simulate(_mixed(2, 2), costs)
    assert [r.busy_s for r in mixed.ranks] == [6.0, 6.0]


def test_a_mixed_schedule_runs_on_real_ranks_with_one_process_gradients():
    import labs
    rows = _mixed(4, 6)
    run = labs.run_pipeline(rows, P=4, M=6, layers=4, batch_size=12, pace_ms=None, warmup_steps=0, steps=1)
    assert run.max_grad_error < 1e-6
    assert {e.action.kind for events in run.trace.events for e in events} == set("FIWB")
    # negative control: the same list with one rank's W's dropped never reaches the runtime
    broken = [row if r else [a for a in row if "W" not in a] for r, row in enumerate(rows)]
    with pytest.raises(ScheduleError, match="is missing"):
        labs.run_pipeline(broken, P=4, M=6, layers=4, batch_size=12, pace_ms=None)
