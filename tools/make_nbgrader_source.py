"""Write an nbgrader course's ``source/`` from the solved notebooks: nbgrader's cell metadata, test cells, labs.

    python tools/make_nbgrader_source.py COURSE solutions/02_microbatching.ipynb solutions/05_interleaved.ipynb --seed 7
    cd COURSE && nbgrader generate_assignment 02_microbatching     # then release_assignment, collect, autograde ...

For each notebook ``NN_name.ipynb`` it writes ``COURSE/source/NN_name/NN_name.ipynb`` (one assignment per notebook,
named like it) and ``COURSE/source/NN_name/labs/`` (the course package: learners get it with the release, and
``nbgrader autograde`` copies the lecturer's version back over whatever a learner submitted beside the notebook).
Cell metadata (nbgrader's schema version 3):

* a code cell holding ``### BEGIN SOLUTION`` ... ``### END SOLUTION``: a **solution cell**, ``grade_id``
  ``answer_<function>`` (the release has ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` there, as
  tools/make_student_notebooks.py writes);
* after the cell that runs an exercise's visible check (``check_<exercise>(``; else at the end), a new
  **autograded test cell** ``test_<exercise>`` worth the exercise's points, whose body is a hidden test (removed from
  the release, kept in ``source/`` and nbgrader's gradebook) calling ``labs.grading.nbgrader.autograde``: the points
  earned are the cell's value (nbgrader's partial credit) and what failed is printed;
* every other code cell: **read-only** (``locked``; autograde puts the lecturer's source back).

``--seed`` fixes the cases of the hidden tests (default: a fresh one, printed): one seed for the class, the same cases
``python -m labs grade --seed`` draws. ``COURSE/nbgrader_config.py`` (written if missing) sets the course id and
nbgrader's per-cell timeout (``c.Execute.timeout``; nbgrader's own default, 30 s, interrupts notebook 02's sweep).
For scores that code in a notebook cannot change, see README ("Grading a class"): ``python -m labs grade
COURSE/submitted --gradebook grades.csv --nbgrader COURSE`` after ``nbgrader autograde``.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import secrets
import shutil
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SCHEMA_VERSION = 3
CONFIG = '''c = get_config()  # noqa: F821 - nbgrader's configuration file
c.CourseDirectory.course_id = "pipeline-parallelism"
# nbgrader stops a cell after 30 s by default; notebook 02's sweep (six real runs) takes longer on a laptop, and test
# cells of notebooks 04, 05, 11 and 12 make real multi-process runs. A cell past this limit gets CellTimeoutError
# (0 points for a test cell) and the notebook goes on.
c.Execute.timeout = {timeout}
'''


def _meta(**fields) -> dict:
    return {"nbgrader": {"schema_version": SCHEMA_VERSION, "grade": False, "solution": False, "locked": False,
                         **fields}}


def test_cell(module: str, name: str, points: float, seed: int):
    """The autograded test cell of exercise ``name``: a visible comment and a hidden call of the course grader."""
    source = (f"# autograded: {name} ({points:g} points), scored by the course grader\n"
              f"### BEGIN HIDDEN TESTS\n"
              f"from labs.grading.nbgrader import autograde\n"
              f"autograde(globals(), {module!r}, {name!r}, seed={seed})\n"
              f"### END HIDDEN TESTS")
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata = _meta(grade=True, locked=True, points=float(points), grade_id=f"test_{name}")
    return cell


def nbgrader_notebook(path: str, seed: int, number: str | None = None):
    """The solved notebook at ``path`` with nbgrader metadata and one test cell per graded exercise."""
    from labs.grading.names import identify, module_of
    module = module_of(number or identify(path)[1])
    graded = importlib.import_module(module).GRADED
    nb = nbformat.read(path, as_version=4)
    cells, pending = [], {g.name: g for g in graded}
    for index, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            if "### BEGIN SOLUTION" in cell.source:
                function = re.search(r"^def (\w+)", cell.source, re.M)
                cell.metadata.update(_meta(solution=True, grade_id=f"answer_{function[1] if function else index}"))
            else:
                cell.metadata.update(_meta(locked=True, grade_id=f"cell_{index}"))
        cells.append(cell)
        if cell.cell_type != "code" or "### BEGIN SOLUTION" in cell.source:
            continue
        for name in list(pending):  # the test goes right after the cell that runs the exercise's visible check
            if re.search(rf"\bcheck_{re.escape(name)}\s*\(", cell.source):
                cells.append(test_cell(module, name, pending.pop(name).points, seed))
    for name, graded_exercise in pending.items():  # no visible check found: at the end
        cells.append(test_cell(module, name, graded_exercise.points, seed))
    nb.cells = cells
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("course", help="the nbgrader course folder (created if missing)")
    parser.add_argument("notebooks", nargs="+", help="solved notebooks, solutions/NN_name.ipynb")
    parser.add_argument("--seed", type=int, help="seed of the hidden cases (default: a fresh one)")
    parser.add_argument("--timeout", type=int, default=300, help="nbgrader's per-cell timeout in the config (s)")
    args = parser.parse_args(argv)
    seed = secrets.randbits(32) if args.seed is None else args.seed
    for path in args.notebooks:
        name = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.join(args.course, "source", name)
        os.makedirs(folder, exist_ok=True)
        nbformat.write(nbgrader_notebook(path, seed), os.path.join(folder, name + ".ipynb"))
        shutil.rmtree(os.path.join(folder, "labs"), ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "labs"), os.path.join(folder, "labs"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        print(f"wrote {folder}/{name}.ipynb and {folder}/labs")
    config = os.path.join(args.course, "nbgrader_config.py")
    if not os.path.exists(config):
        with open(config, "w") as handle:
            handle.write(CONFIG.format(timeout=args.timeout))
        print(f"wrote {config}")
    print(f"hidden cases drawn with seed {seed}: grade with the same --seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
