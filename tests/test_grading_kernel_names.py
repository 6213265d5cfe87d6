"""The grading request is evaluated in the learner's namespace: names a learner may define there (``compile`` for a
schedule compiler, ``exec``, ``globals``, ``open``, ``json``) must not change what is graded (one real kernel, ~5 s)."""
from __future__ import annotations

from tests.test_grading_attacks import EVENTS, IDLE, WRONG_IDLE, _grade, _zero

OWN_NAMES = """
def compile(schedule, *args, **kwargs):  # a learner's schedule compiler
    raise RuntimeError("the learner's own compile")
def exec(*args, **kwargs):
    raise RuntimeError("the learner's own exec")
globals = open = json = "the learner's own variables"
"""


def test_a_learners_own_compile_exec_and_globals_do_not_break_grading(tmp_path):
    result = _grade(tmp_path, OWN_NAMES, IDLE, EVENTS)
    assert result["idle_fraction"]["passed"] and result["idle_from_events"]["passed"], result
    wrong = _grade(tmp_path, OWN_NAMES, WRONG_IDLE, EVENTS)  # control: the same names, a wrong answer, 0 points
    _zero(wrong["idle_fraction"], "expected")
    assert wrong["idle_from_events"]["passed"]
