"""Grading executes a notebook and scores each exercise (runs real kernels and ranks: ~1 minute)."""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from labs.__main__ import main as cli
from labs.grading import Graded, module_for
from labs.grading.grader import format_table, grade_notebook

from .exercise_copy import exercise_copy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLVED = os.path.join(ROOT, "solutions", "01_naive_pipeline.ipynb")
STUDENT = os.path.join(ROOT, "notebooks", "01_naive_pipeline.ipynb")
WRONG_SPLIT = """    base, extra = divmod(num_layers, num_stages)
    sizes = [base] * (num_stages - extra) + [base + 1] * extra   # extra layers at the end: not what is asked
    starts = [sum(sizes[:s]) for s in range(num_stages)]
    return [range(a, a + n) for a, n in zip(starts, sizes)]"""


def _by_name(result):
    return {e["name"]: e for e in result["exercises"]}


def test_module_for_reads_the_number():
    assert module_for("notebooks/01_naive_pipeline.ipynb") == "labs.exercises.nb01"
    with pytest.raises(ValueError, match="two-digit"):
        module_for("mine.ipynb")


def test_graded_is_a_plain_record():
    graded = Graded(name="f", points=2, cases=list, score=print)
    assert (graded.name, graded.points, graded.cases, graded.score, graded.run, graded.forbidden) == (
        "f", 2, list, print, None, ())


def test_solved_notebook_gets_full_marks():
    result = grade_notebook(SOLVED)
    assert result["max_score"] > 0
    assert result["score"] == result["max_score"], format_table(result)
    assert all(e["passed"] for e in result["exercises"])
    assert result["cell_errors"] == []


def test_student_notebook_scores_zero_through_the_cli(tmp_path, capsys):
    if not os.path.exists(STUDENT):
        pytest.skip("notebooks/01 not generated yet")
    out = tmp_path / "scores.json"
    assert cli(["grade", STUDENT, "--json", str(out)]) == 1  # exit code 1: graded, points missing (0 needs full marks)
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["score"] == 0 and result["max_score"] > 0
    for entry in result["exercises"]:
        assert not entry["passed"] and "not implemented" in entry["message"], entry
        assert entry["name"] in table
    assert "total" in table and f"0/{result['max_score']:g}" in table


def test_one_wrong_exercise_loses_exactly_its_points(tmp_path):
    nb = nbformat.read(SOLVED, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("def split_stages("))
    head, rest = cell.source.split("    ### BEGIN SOLUTION\n")
    _, tail = rest.split("    ### END SOLUTION")
    cell.source = head + WRONG_SPLIT + tail
    copy = tmp_path / os.path.basename(SOLVED)
    nbformat.write(nb, str(copy))
    result = grade_notebook(str(copy))  # the setup cell finds the temporary copy of labs one folder up
    exercises = _by_name(result)
    lost = exercises["split_stages"]["max_points"] * (1 - exercises["split_stages"]["fraction"])
    assert not exercises["split_stages"]["passed"] and 0 < exercises["split_stages"]["fraction"] < 1  # partial
    assert "split_stages(" in exercises["split_stages"]["message"] and "expected" in exercises["split_stages"]["message"]
    assert all(e["passed"] for name, e in exercises.items() if name != "split_stages"), format_table(result)
    assert abs(result["score"] - (result["max_score"] - lost)) < 1e-3


def test_missing_function_scores_zero_with_a_reason(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import labs\ndef split_stages(n, s):\n"
                                          "    q, r = divmod(n, s)\n"
                                          "    return [range(i * q + min(i, r), (i + 1) * q + min(i + 1, r)) "
                                          "for i in range(s)]"),
                nbformat.v4.new_code_cell("raise RuntimeError('a cell that fails does not stop grading')")]
    path = tmp_path / "01_partial.ipynb"
    nbformat.write(nb, str(path))
    result = grade_notebook(str(path), timeout_s=120)
    exercises = _by_name(result)
    assert exercises["split_stages"]["passed"]
    assert not exercises["stage_step"]["passed"] and "no function named stage_step" in exercises["stage_step"]["message"]
    assert result["score"] == exercises["split_stages"]["max_points"]
    assert [e["cell"] for e in result["cell_errors"]] == [1]


# Part 2 (notebooks 04-06) is graded the same way: one notebook of it, solved, unsolved and one wrong. Notebook 01
# above is graded whole; here the exercise-only copies (tests/exercise_copy.py: the setup cell and the cells the
# graded functions need) are graded, since nbval already runs 05 top to bottom (-90 s of paced runs).
SOLVED_05 = os.path.join(ROOT, "solutions", "05_interleaved.ipynb")
STUDENT_05 = os.path.join(ROOT, "notebooks", "05_interleaved.ipynb")


def test_part_two_solved_full_marks_and_student_zero(tmp_path):
    (tmp_path / "solved").mkdir()
    (tmp_path / "student").mkdir()
    solved = grade_notebook(exercise_copy(SOLVED_05, tmp_path / "solved"))
    student = grade_notebook(exercise_copy(STUDENT_05, tmp_path / "student"))
    assert solved["score"] == solved["max_score"] > 0, format_table(solved)
    assert student["score"] == 0 and student["max_score"] == solved["max_score"], format_table(student)
    assert all("not implemented" in e["message"] for e in student["exercises"])


def test_part_two_one_wrong_exercise_loses_exactly_its_points(tmp_path):
    nb = nbformat.read(exercise_copy(SOLVED_05, tmp_path), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("def interleaved_peak_bytes("))
    head, rest = cell.source.split("    ### BEGIN SOLUTION\n")
    _, tail = rest.split("    ### END SOLUTION")
    cell.source = head + ("    tensor = microbatch_size * width * 4   # 1F1B's P - r stages: wrong for interleaving\n"
                          "    return [min(P - r, M) * (layers // P + v) * tensor for r in range(P)]\n") + tail
    copy = tmp_path / os.path.basename(SOLVED_05)
    nbformat.write(nb, str(copy))
    result = grade_notebook(str(copy))
    exercises = _by_name(result)
    wrong = exercises["interleaved_peak_bytes"]
    assert not wrong["passed"] and "measured walk" in wrong["message"]
    assert exercises["interleaved_schedule"]["passed"], format_table(result)
    owner = wrong
    assert 0 <= owner["points"] < owner["max_points"]
    assert abs(result["score"] - (result["max_score"] - owner["max_points"] + owner["points"])) < 1e-3
