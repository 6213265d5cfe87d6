"""Visible checks and score helpers (``labs/exercises/_common.py``), in this process: no kernel (ranks: ~5 s)."""
from __future__ import annotations

import torch

import labs
from labs.exercises import _common, nb00, nb02
from labs.exercises._common import exercise, fraction_of_cases, instructiveness, score_cases


def test_not_implemented_says_it_carries_on_with_the_reference(capsys):
    def unsolved(P, M):
        raise NotImplementedError()
    assert nb02.check_idle_fraction(unsolved) is False
    assert capsys.readouterr().out == ("not implemented yet: idle_fraction (carrying on with the labs reference, "
                                       "labs.idle_fraction)\n")


def test_a_function_that_calls_the_reference_is_told_so(capsys):
    saved = labs.idle_fraction
    assert nb02.check_idle_fraction(lambda P, M: saved(P, M)) is False
    out = capsys.readouterr().out
    assert "idle_fraction just calls labs.theory.idle_fraction, the reference it is asked to write" in out
    assert labs.idle_fraction(4, 8) == 3 / 11  # the reference works again after the check


def test_the_most_instructive_failure_comes_first_and_repeats_show_once(capsys):
    def wrong(P, M):
        raise ValueError("always")
    assert nb02.check_idle_fraction(wrong) is False
    assert capsys.readouterr().out == "idle_fraction(2, 3) raised ValueError: always (the same for 5 cases)\n"
    assert sorted([(1, 8), (4, 1), (4, 8), (2, 3)], key=instructiveness) == [(2, 3), (4, 8), (4, 1), (1, 8)]


def test_fraction_of_cases_gives_partial_credit_and_names_a_non_degenerate_case():
    fraction, message = fraction_of_cases([((1, 1), "f(1, 1) returned 2"), ((4, 8), "f(4, 8) returned 3")], 4)
    assert fraction == 0.5 and message.index("f(4, 8)") < message.index("f(1, 1)")
    idle = next(graded for graded in nb02.GRADED if graded.name == "idle_fraction")
    fraction, message = idle.score([(4, 8), (2, 1)], [3 / 11, {"error": "TypeError: x"}])
    assert fraction == 0.5 and "idle_fraction(2, 1) raised TypeError: x" in message
    fraction, message = score_cases([(4, 8), (2, 1)], [0.25, {"error": "TypeError: x"}],
                                    exercise("f")(lambda case, value: None if value == 0.25 else "wrong"))
    assert fraction == 0.5 and "f(2, 1) raised TypeError: x" in message
    assert _common.special("f(1)", {"forbidden": "labs.x"}).startswith("f(1) calls labs.x")


def test_a_ring_that_never_communicates_fails(capsys):
    def lazy(rank, world_size):  # the neighbour's tensor computed locally: right values, no message
        return torch.arange(4, dtype=torch.float32) + 10 * ((rank - 1) % world_size)
    assert nb00.check_ring_pass(lazy) is False
    assert "without receiving or sending a message" in capsys.readouterr().out
    honest = [{"result": nb00.ring_tensor((r - 1) % 3).tolist(), "sent": 1, "received": 1} for r in range(3)]
    silent = [dict(report, sent=0, received=0) for report in honest]
    assert nb00.GRADED[0].score([(3,), (3,)], [honest, silent])[0] == 0.5
