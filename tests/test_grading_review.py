"""Cells that reach into the grading machinery are named for the lecturer (labs/grading/review.py): the kernel is the
learner's, so a notebook that shadows ``__import__`` can call the reference before the grader's guard is up; the
grader cannot stop that inside the kernel, but it reads the source in its own process and flags the cell. The course's
own notebooks are the negative control: none is flagged (pure, plus one real kernel: ~5 s)."""
from __future__ import annotations

import csv
import glob
import os

import nbformat
import pytest

from labs.grading.gradebook import write_gradebook
from labs.grading.grader import format_table
from labs.grading.review import review_notes
from tests.test_grading_attacks import IDLE, SMALLEST, WRONG_IDLE, _grade
from tests.test_grading_kernel_names import OWN_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHADOW = '''
import builtins, json, labs.theory as theory
_import = builtins.__import__
class Builtins:
    def __getattr__(self, name):
        return getattr(builtins, name)
    def exec(self, code, ns):
        builtins.exec(code, ns)
        real = ns["run_cases"]
        def run_cases(namespace, request):
            req = json.loads(request)
            if req["name"] == "idle_fraction":  # the reference, called before the grader's guard is up
                table = {tuple(c): theory.idle_fraction(*c) for c in req["cases"]}
                namespace = dict(namespace, idle_fraction=lambda P, M: table[(P, M)])
            return real(namespace, request)
        ns["run_cases"] = run_cases
def __import__(name, *args, **kwargs):
    return Builtins() if name == "builtins" else _import(name, *args, **kwargs)
'''
ATTACKS = {  # what each attack in test_grading_attacks.py and this file does, in a line or two
    "shadowed import": SHADOW,
    "the grader's module": "from labs.grading import Graded\n",
    "print replaced": "import builtins, sys\nbuiltins.print = lambda *a: None\n",
    "sys.stdout replaced": "sys.stdout = sys.stderr = object()\n",
    "transformers": "ip = get_ipython()\nip.ast_transformers.append(object())\n",
    "frames": "import sys\nframe = sys._getframe(2)\n",
    "code objects": "code = labs.idle_fraction.__code__\n",
    "json replaced": "import json\njson.dumps = lambda *a, **k: '{}'\n",
    "a profile hook": "import sys\nsys.setprofile(None)\n",
}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "solutions", "*.ipynb")) +
                                        glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))), ids=os.path.basename)
def test_no_course_notebook_is_flagged(path):
    cells = [(i, c.source) for i, c in enumerate(nbformat.read(path, as_version=4).cells) if c.cell_type == "code"]
    assert review_notes(cells) == []


@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_is_flagged_and_a_learners_own_names_are_not(name):
    notes = review_notes([(0, "import labs"), (1, IDLE), (2, ATTACKS[name])])
    assert len(notes) == 1 and notes[0].startswith("cell 2: "), notes
    assert review_notes([(0, "import labs"), (1, OWN_NAMES), (2, IDLE)]) == []


def test_the_shadowed_import_is_named_in_the_feedback_and_the_gradebook(tmp_path):
    result = _grade(tmp_path, WRONG_IDLE, SMALLEST, SHADOW)  # its points are not to be trusted: it is flagged
    assert result["_total"]["review"] == ["cell 3: the import machinery (__import__, builtins); the grader's own "
                                          "code (labs.grading, run_cases, user_expressions)"]
    assert "cells for the lecturer to read" in format_table(result["_total"])
    write_gradebook(str(tmp_path / "g.csv"), {("mallory", "02"): result["_total"]}, 1, [])
    with open(tmp_path / "g.csv", encoding="utf-8-sig", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert row["review"].startswith("02: cell 3: the import machinery"), row
    honest = _grade(tmp_path, IDLE, SMALLEST)["_total"]  # control: the same grader on an honest notebook
    assert honest["review"] == [] and "lecturer to read" not in format_table(honest)
