"""Notebook 11's kernel-side helpers (no processes): the exercise's answer shows only after the check passes, the
fallback says whose lists run, and the plausible wrong hold-back counts fail the offline check."""
from labs.exercises import nb11
from labs.schedules import zb_h1


def test_reveal_shows_the_answer_only_after_the_check(capsys):
    nb11.reveal(False)
    hidden = capsys.readouterr().out
    assert "appear here once zb_h1_schedule passes" in hidden and "rank 3:" not in hidden
    nb11.reveal(True)
    shown = capsys.readouterr().out
    assert "rank 3:" in shown and "3W0" in shown  # negative control above: the same call without a pass hides it


def test_the_label_says_when_the_notebook_falls_back_to_labs():
    assert nb11.label(True) == "your ZB-H1"
    assert "has not passed its check yet" in nb11.label(False) and "your ZB-H1" not in nb11.label(False)


def test_the_reference_passes_and_every_wrong_hold_back_count_fails_offline():
    for P, M in ((4, 8), (3, 6), (5, 10)):
        assert nb11.schedule_problem((P, M), zb_h1(P, M)) is None
        assert nb11.schedule_problem((P, M), nb11.held_back(P, M, lambda r: r)) is None  # the same order, rebuilt
        for name, wrong in nb11.WRONG.items():
            assert nb11.schedule_problem((P, M), wrong(P, M)) is not None, (name, P, M)
