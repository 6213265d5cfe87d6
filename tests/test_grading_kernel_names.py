"""The grading request is evaluated in the learner's namespace: names a learner may define there (``compile`` for a
schedule compiler, ``exec``, ``globals``, ``open``, ``json``) must not change what is graded (one real kernel, ~5 s)."""
from __future__ import annotations

from tests.test_grading_attacks import SMALLEST, IDLE, WRONG_IDLE, _grade, _zero

OWN_NAMES = """
def compile(schedule, *args, **kwargs):  # a learner's schedule compiler
    raise RuntimeError("the learner's own compile")
def exec(*args, **kwargs):
    raise RuntimeError("the learner's own exec")
globals = open = json = "the learner's own variables"
"""


def test_a_learners_own_compile_exec_and_globals_do_not_break_grading(tmp_path):
    result = _grade(tmp_path, OWN_NAMES, IDLE, SMALLEST)
    assert result["idle_fraction"]["passed"] and result["smallest_m"]["passed"], result
    wrong = _grade(tmp_path, OWN_NAMES, WRONG_IDLE, SMALLEST)  # control: the same names, a wrong answer, 0 points
    _zero(wrong["idle_fraction"], "expected")
    assert wrong["smallest_m"]["passed"]
