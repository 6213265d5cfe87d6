"""The notebooks follow the course's conventions, and notebooks/ is generated from solutions/ (no process starts)."""
from __future__ import annotations

import glob
import importlib
import os
import re
import sys

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_student_notebooks as maker  # noqa: E402

SOLUTIONS = sorted(glob.glob(os.path.join(ROOT, "solutions", "[0-9][0-9]_*.ipynb")))
STUDENTS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "[0-9][0-9]_*.ipynb")))
import host_course  # noqa: E402

# Every notebook points at one home (tests/test_hosting.py checks they agree); its setup cell and badge are the
# ones tools/host_course.py writes for that home.
HOME_URL, HOME_BRANCH = host_course.homes()[os.path.relpath(SOLUTIONS[0], ROOT)][:2] if SOLUTIONS else (None, None)
SETUP = host_course.setup_cell(HOME_URL, HOME_BRANCH) if SOLUTIONS else ""


def _badge(stem: str) -> str:
    return host_course.badge(HOME_URL, HOME_BRANCH, stem)


def _name(path: str) -> str:
    return os.path.relpath(path, ROOT)


def _read(path: str):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert SOLUTIONS, "no solutions/NN_*.ipynb found"


# ------------------------------------------------------------------ the generator itself
def test_strip_solutions_keeps_the_marker_indentation():
    source = "def f(x):\n    \"\"\"doc\"\"\"\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\nf(1)"
    assert maker.strip_solutions(source) == ("def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n"
                                             "    raise NotImplementedError()\nf(1)")


def test_strip_solutions_handles_several_blocks_and_top_level():
    source = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\ny = 2\nif y:\n        ### BEGIN SOLUTION\n        z = 3\n" \
             "        ### END SOLUTION"
    assert maker.strip_solutions(source).split("\n") == [
        "# YOUR CODE HERE", "raise NotImplementedError()", "y = 2", "if y:",
        "        # YOUR CODE HERE", "        raise NotImplementedError()"]


@pytest.mark.parametrize("source", ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                                    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_refused(source):
    with pytest.raises(maker.MarkerError):
        maker.strip_solutions(source)


def test_student_cells_clear_outputs():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    cell.execution_count = 3
    nb.cells = [cell, nbformat.v4.new_markdown_cell("# x")]
    cells = maker.student_cells(nb)
    assert cells[0].outputs == [] and cells[0].execution_count is None
    assert nb.cells[0].outputs, "student_cells must not modify the solved notebook"


# ------------------------------------------------------------------ solutions/ and notebooks/ in step
@pytest.mark.parametrize("solution", SOLUTIONS, ids=_name)
def test_student_twin_is_generated_from_the_solution(solution):
    problems = maker.differences(solution)
    assert not problems, ("\n".join(problems) + "\nregenerate with: python tools/make_student_notebooks.py "
                          + _name(solution))


@pytest.mark.parametrize("student", STUDENTS, ids=_name)
def test_every_student_notebook_has_a_solution(student):
    assert os.path.exists(os.path.join(ROOT, "solutions", os.path.basename(student))), \
        f"{_name(student)} has no solutions/ twin (notebooks/ is generated; write the solved notebook instead)"


def _solution_lines(nb) -> set[str]:
    """Distinctive lines inside solution blocks: long enough and not also outside the blocks."""
    inside, outside = set(), set()
    for source in _code(nb):
        in_block = False
        for line in source.split("\n"):
            stripped = line.strip()
            if stripped.startswith(maker.BEGIN):
                in_block = True
            elif stripped.startswith(maker.END):
                in_block = False
            else:
                (inside if in_block else outside).add(stripped)
    return {line for line in inside - outside if len(line) >= 12 and not line.startswith("#")}


@pytest.mark.parametrize("student", STUDENTS, ids=_name)
def test_no_solution_in_student_notebooks(student):
    nb = _read(student)
    text = "\n".join(c.source for c in nb.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, f"{_name(student)} still has markers"
    solution = os.path.join(ROOT, "solutions", os.path.basename(student))
    if os.path.exists(solution):
        code = {line.strip() for source in _code(nb) for line in source.split("\n")}
        leaked = sorted(_solution_lines(_read(solution)) & code)
        assert not leaked, f"{_name(student)} contains solution code: {leaked[:3]}"


@pytest.mark.parametrize("student", STUDENTS, ids=_name)
def test_student_notebooks_ran_top_to_bottom(student):
    nb = _read(student)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", \
                f"{_name(student)} cell {index} raised {output.get('ename')}: a student notebook must run to the end"
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{_name(student)} has no outputs: generate it with tools/make_student_notebooks.py (which executes it)"


# ------------------------------------------------------------------ conventions of every notebook
@pytest.mark.parametrize("path", SOLUTIONS + STUDENTS, ids=_name)
def test_notebook_conventions(path):
    nb, name = _read(path), _name(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    number = stem[:2]
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.match(rf"# {number} · \S", first.source), \
        f"{name}: the first cell must be markdown starting '# {number} · Title'"
    assert _badge(stem) in first.source, f"{name}: the first cell lacks the Colab badge for {stem}.ipynb"
    assert SETUP in _code(nb), f"{name}: the setup cell is missing or differs from the shared one"
    assert any(c.cell_type == "markdown" and "what you will learn" in c.source.lower() for c in nb.cells), \
        f"{name}: no 'What you will learn' cell"
    assert any(re.search(r"\bcheck_\w+\(", source) for source in _code(nb)), f"{name}: no check_...() call"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{name}: kernel must be python3"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=_name)
def test_each_exercise_is_followed_by_its_check(solution):
    nb = _read(solution)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for index, cell in enumerate(cells):
        if maker.BEGIN in cell.source:
            after = cells[index + 1].source if index + 1 < len(cells) else ""
            assert re.search(r"\bcheck_\w+\(", after), \
                f"{_name(solution)}: the code cell after an exercise must call its check_...()\n{cell.source[:200]}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=_name)
def test_graded_exercises_exist_in_the_notebook(solution):
    module_name = f"labs.exercises.nb{os.path.basename(solution)[:2]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.fail(f"{_name(solution)} has no exercise module {module_name}")
    code = "\n".join(_code(_read(solution)))
    assert module.GRADED, f"{module_name}.GRADED is empty"
    for graded in module.GRADED:
        assert re.search(rf"^def {graded.name}\(", code, re.M), \
            f"{_name(solution)}: graded exercise {graded.name} is not defined by a 'def {graded.name}(' in a cell"
