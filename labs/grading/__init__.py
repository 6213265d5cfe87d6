"""Grading outside the learner's kernel: what an exercise declares, the kernel side, the session, the grader.

* ``protocol``: ``Graded`` (an exercise's cases, score, forbidden references), reading and scoring outputs;
* ``kernel``: what runs inside the learner's kernel (``plain``, ``forbidden_calls``, ``run_cases``; stdlib only);
* ``session``: a fresh Jupyter kernel under time limits; ``grader``: ``grade_notebook``, ``python -m labs grade``.
"""
from __future__ import annotations

from .kernel import forbidden_calls, plain
from .protocol import Graded, GradingError, constant_output, module_for, read_outputs, score_outputs

__all__ = ["Graded", "GradingError", "constant_output", "forbidden_calls", "module_for", "plain", "read_outputs", "score_outputs"]
