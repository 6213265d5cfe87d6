"""nbgrader 0.9 end to end on a lean notebook 02 (issue 17 part 2, issue 21): tools/make_nbgrader_source.py, nbgrader's
own generate_assignment and autograde, then ``python -m labs grade ... --nbgrader COURSE`` writing the course
grader's points into nbgrader's gradebook. Four students: correct, the release unchanged (empty), constant stubs,
and one who patches the test cells' function in the kernel: nbgrader's in-kernel tests give the patcher full marks
(its model: tests run in the learner's kernel), the course grader's points put it back to 0. Skipped where nbgrader
is not installed (bash .ci/run installs it from requirements-grading.txt)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

from labs.exercises import nb02  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLVED = os.path.join(ROOT, "solutions", "02_microbatching.ipynb")
NAME = "02_microbatching"
SEED = 4242
MAX = sum(g.points for g in nb02.GRADED)
FIRST = nb02.GRADED[0]
CHEAT = ("import labs.grading.nbgrader as bridge, labs.exercises.nb02 as exercises\n"
         "bridge.autograde = lambda namespace, module, name, seed=None: "
         "next(g.points for g in exercises.GRADED if g.name == name)  # full points, whatever the answers")
STUDENTS = {"correct": MAX, "empty": 0.0, "stub": 0.0, "patcher": 0.0}  # what the course grader gives


def _env():
    return dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                PYTHONPATH=ROOT)


def _run(*command, cwd):
    done = subprocess.run(list(command), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _lean_solved(path):
    """The solved notebook 02 with only its setup cell, its exercise cells and the first exercise's check."""
    nb = nbformat.read(SOLVED, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [code[0]] + [c for c in code if "### BEGIN SOLUTION" in c.source or f"check_{FIRST.name}(" in c.source]
    nbformat.write(nb, str(path))


def _solve(release, body=None):
    """The release with every ``raise NotImplementedError()`` answer replaced by the solution (or ``body``)."""
    solved = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(SOLVED, as_version=4).cells
              if "### BEGIN SOLUTION" in c.source and (c.metadata.setdefault("nbgrader", {}).update(
                  grade_id="answer_" + re.match(r"def (\w+)", c.source)[1]) or True)}
    nb = nbformat.read(str(release), as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id in solved:
            region = re.search(r"### BEGIN SOLUTION\n(.*?)    ### END SOLUTION", solved[grade_id], re.S)[1]
            cell.source = cell.source.replace("    # YOUR CODE HERE\n    raise NotImplementedError()",
                                              region.rstrip("\n") if body is None else body)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course made, released, submitted by four students and autograded by nbgrader, then graded by labs."""
    folder = tmp_path_factory.mktemp("nbgrader")
    course = folder / "course"
    _lean_solved(folder / f"{NAME}.ipynb")
    _run(sys.executable, os.path.join(ROOT, "tools", "make_nbgrader_source.py"), str(course),
         str(folder / f"{NAME}.ipynb"), "--seed", str(SEED), "--timeout", "120", cwd=ROOT)
    _run(sys.executable, "-m", "nbgrader", "generate_assignment", NAME, "--force", cwd=course)
    release = course / "release" / NAME / f"{NAME}.ipynb"
    submissions = {"correct": _solve(release), "empty": nbformat.read(str(release), as_version=4),
                   "stub": _solve(release, "    return 0.0"), "patcher": nbformat.read(str(release), as_version=4)}
    submissions["patcher"].cells.insert(2, nbformat.v4.new_code_cell(CHEAT))
    for student, nb in submissions.items():
        target = course / "submitted" / student / NAME
        target.mkdir(parents=True)
        nbformat.write(nb, str(target / f"{NAME}.ipynb"))
    autograde = _run(sys.executable, "-m", "nbgrader", "autograde", NAME, "--force", cwd=course)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        nbgrader_scores = {s: gradebook.find_submission(NAME, s).score for s in STUDENTS}
    labs_grade = subprocess.run([sys.executable, "-m", "labs", "grade", str(course / "submitted"), "--gradebook",
                                 str(folder / "grades.csv"), "--seed", str(SEED), "--nbgrader", str(course)],
                                cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    return course, release, autograde, nbgrader_scores, labs_grade


def test_the_release_hides_the_tests_and_the_answers(course):
    _, release, _, _, _ = course
    text = release.read_text()
    assert "autograde(" not in text and "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    nb = nbformat.read(str(release), as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert sorted(c.metadata["nbgrader"]["grade_id"] for c in tests) == sorted(f"test_{g.name}" for g in nb02.GRADED)
    assert sum(c.metadata["nbgrader"]["points"] for c in tests) == MAX
    assert all(c.source.startswith("# autograded:") for c in tests)


def test_nbgraders_autograde_scores_the_honest_students_right(course):
    folder, _, _, scores, _ = course
    assert scores["correct"] == pytest.approx(MAX) and scores["empty"] == 0 and scores["stub"] == 0, scores
    cell = next(c for c in nbformat.read(str(folder / "autograded" / "correct" / NAME / f"{NAME}.ipynb"),
                                         as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == f"test_{FIRST.name}")
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert f"{FIRST.name}: {FIRST.points:g}/{FIRST.points:g} (cases drawn with seed {SEED})" in printed


def test_a_patched_kernel_fools_nbgrader_but_not_the_course_grader(course):
    folder, _, _, scores, labs_grade = course
    assert scores["patcher"] == pytest.approx(MAX)  # nbgrader's model: the test cells run in the learner's kernel
    assert labs_grade.returncode == 0, labs_grade.stdout + labs_grade.stderr
    assert f"{len(nb02.GRADED) * len(STUDENTS)} test-cell grades set" in labs_grade.stdout, labs_grade.stdout
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gradebook:
        final = {s: gradebook.find_submission(NAME, s).score for s in STUDENTS}
        comment = gradebook.find_comment(f"answer_{FIRST.name}", NAME, NAME, "stub").comment
    assert final == pytest.approx(STUDENTS), final
    assert f"(course grader, seed {SEED})" in comment and "returned 0" in comment, comment
    export = _run(sys.executable, "-m", "nbgrader", "export", "--to", str(folder / "grades.csv"), cwd=folder)
    rows = (folder / "grades.csv").read_text().splitlines()
    assert any(row.startswith(f"{NAME},") and ",patcher," in row and row.endswith(f",0.0,0.0,{MAX:.1f}")
               for row in rows), rows + [export.stdout]
