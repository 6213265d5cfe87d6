"""Notebook 05's interleaved_schedule exercise, scored on the grader's side (no kernel): wrong orders score 0 and say
why, and the messages never give the warm-up count away."""
import random

from labs.exercises import nb05
from labs.grading.kernel import plain
from labs.schedules import Action, interleaved


def _outputs(make, cases):
    return [plain(make(*case)) for case in cases]


def _forward_chunk_order_in_backward(P, M, v):
    """A classic mistake: the backwards walk the chunks in the forward order instead of in reverse."""
    return [[Action((v - 1 - a.stage // P) * P + a.stage % P, a.kind, a.microbatch) if a.kind == "B" else a
             for a in actions] for actions in interleaved(P, M, v)]


def test_backwards_in_forward_chunk_order_score_zero_and_say_why():
    cases = nb05._schedule_cases(random.Random(0))
    fraction, message = nb05._schedule_score(cases, _outputs(_forward_chunk_order_in_backward, cases))
    assert fraction == 0.0
    assert "validator rejects it" in message and "no real run" in message


def test_a_valid_but_slower_order_is_caught_by_the_simulator():
    # warm-up of one forward on every rank: valid (no deadlock) for P=2, but not Megatron's timing or memory
    P, M, v = 2, 4, 2
    reference = interleaved(P, M, v)
    slow = []
    for actions in reference:
        forwards = [a for a in actions if a.kind == "F"]
        backwards = [a for a in actions if a.kind == "B"]
        slow.append(forwards + backwards)  # GPipe-like: every forward first
    problem = nb05.schedule_problem((P, M, v), plain(slow))
    assert problem and "rank 0 holds 8 chunk micro-batches" in problem and "2(P-1-r)" not in problem
