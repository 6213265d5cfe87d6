"""Generate the learner's notebooks (``notebooks/``) from the solved ones (``solutions/``).

    python tools/make_student_notebooks.py                          # every solutions/*.ipynb
    python tools/make_student_notebooks.py solutions/01_naive_pipeline.ipynb
    python tools/make_student_notebooks.py --check                  # exit 1 if notebooks/ is out of step

Each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block (markers included) becomes ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the BEGIN marker's indentation; outputs are cleared; then the student notebook is
executed top to bottom (it must run without an error: its checks say "not implemented yet" and the narrative carries
on with the ``labs`` reference) and written with its outputs. ``--check`` writes nothing and lists the notebooks
whose cell sources differ from what would be generated, or that are missing.
"""
from __future__ import annotations

import argparse
import copy
import glob
import os
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS = os.path.join(ROOT, "solutions")
NOTEBOOKS = os.path.join(ROOT, "notebooks")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


class MarkerError(ValueError):
    """A BEGIN SOLUTION without its END (or the reverse)."""


def strip_solutions(source: str, where: str = "a cell") -> str:
    """``source`` with every solution block replaced by the placeholder, at the BEGIN marker's indentation."""
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise MarkerError(f"{where}, line {number}: a second {BEGIN} before {END}")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
        elif stripped.startswith(END):
            if not inside:
                raise MarkerError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def student_cells(solution_nb) -> list:
    """The student notebook's cells for a solved notebook (a NotebookNode): solutions stripped, outputs cleared."""
    cells = []
    for index, cell in enumerate(solution_nb.cells):
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"cell {index}")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    return cells


def student_notebook(solution_path: str):
    solution = nbformat.read(solution_path, as_version=4)
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(solution.metadata))
    nb.nbformat_minor = solution.nbformat_minor
    nb.cells = student_cells(solution)
    return nb


def student_path(solution_path: str) -> str:
    return os.path.join(NOTEBOOKS, os.path.basename(solution_path))


def differences(solution_path: str, student_file: str | None = None) -> list[str]:
    """Why the student notebook is out of step with its solution (empty when it is in step)."""
    student_file = student_file or student_path(solution_path)
    name = os.path.relpath(student_file, ROOT)
    if not os.path.exists(student_file):
        return [f"{name}: missing (generate it from {os.path.relpath(solution_path, ROOT)})"]
    expected = student_cells(nbformat.read(solution_path, as_version=4))
    actual = nbformat.read(student_file, as_version=4).cells
    problems = []
    if len(expected) != len(actual):
        problems.append(f"{name}: {len(actual)} cells, expected {len(expected)}")
    for index, (want, got) in enumerate(zip(expected, actual)):
        if want.cell_type != got.cell_type or want.source != got.source:
            first = next((i for i, (a, b) in enumerate(zip(want.source.split("\n"), got.source.split("\n")))
                          if a != b), min(len(want.source.split("\n")), len(got.source.split("\n"))))
            problems.append(f"{name}: cell {index} ({want.cell_type}) differs from the generated one "
                            f"from line {first + 1}")
    return problems


def execute(nb, timeout: float = 180.0):
    """Run the student notebook top to bottom in notebooks/ (raises CellExecutionError on the first error)."""
    from nbclient import NotebookClient
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": NOTEBOOKS}})
    client.execute()
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="solutions/*.ipynb to convert (default: all)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if notebooks/ is out of step")
    parser.add_argument("--no-execute", action="store_true", help="write without executing (outputs stay empty)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(glob.glob(os.path.join(SOLUTIONS, "*.ipynb")))
    if args.check:
        problems = [p for path in paths for p in differences(path)]
        for problem in problems:
            print(problem)
        print("notebooks/ is in step with solutions/" if not problems else
              "out of step: run python tools/make_student_notebooks.py")
        return 1 if problems else 0
    os.makedirs(NOTEBOOKS, exist_ok=True)
    for path in paths:
        nb = student_notebook(path)
        if not args.no_execute:
            execute(nb)
        nbformat.write(nb, student_path(path))
        print(f"wrote {os.path.relpath(student_path(path), ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
