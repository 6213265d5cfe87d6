"""A lecturer grades a class in one command (issue 17 part 2, issue 21): a synthetic class of notebook 02 named the
way learning platforms name files, graded once by ``python -m labs grade ... --gradebook`` (a real CLI process,
real kernels), then every row, the gradebook, the feedback and the exit codes are checked against what each
submission must get. The notebooks are lean (the setup cell and the exercise cells of notebook 02, with the same
cell ids) so that the class grades in about a minute."""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest

from labs.exercises import nb02
from labs.grading.names import identify
from labs.grading.limits import FLOOR_S, cell_limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLVED = os.path.join(ROOT, "solutions", "02_microbatching.ipynb")
STUDENT = os.path.join(ROOT, "notebooks", "02_microbatching.ipynb")
SEED = 20261129
STEP_TIMEOUT_S = 20  # the looping cell stops here (its request at 15 s); with 10 s two checks failed once, busy
GRADED = nb02.GRADED
FIRST = GRADED[0]
MAX = sum(g.points for g in GRADED)


def _solution_bodies() -> dict:
    """{function: (its solved cell's source, its signature's arguments)} from the solved notebook."""
    bodies = {}
    for cell in nbformat.read(SOLVED, as_version=4).cells:
        match = re.match(r"def (\w+)\(([^)]*)\)", cell.source)
        if cell.cell_type == "code" and match and "### BEGIN SOLUTION" in cell.source:
            bodies[match[1]] = (cell.source, match[2])
    return bodies


BODIES = _solution_bodies()


def _with_body(name: str, body: str | None) -> str:
    """The solved cell of ``name`` with its solution region replaced by ``body`` (None: the solution itself)."""
    source = BODIES[name][0]
    head, rest = source.split("    ### BEGIN SOLUTION\n")
    solution, tail = rest.split("    ### END SOLUTION")
    return head + (solution if body is None else body.rstrip("\n") + "\n") + tail.lstrip("\n")


def _lean(bodies: dict, extra: str | None = None):
    """The student notebook's setup cell, each graded function's cell (``bodies[name]``: a body, None for the
    solution, "stub" for the student's unsolved cell) and the cell that runs its visible check, with their ids."""
    nb = nbformat.read(STUDENT, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    keep = [code[0]]
    for graded in GRADED:
        define = next(c for c in code if c.source.startswith(f"def {graded.name}("))
        if bodies.get(graded.name, "stub") != "stub":
            define.source = _with_body(graded.name, bodies[graded.name])
        keep.append(define)
        if graded is FIRST:  # its check needs nothing from the narrative
            keep.append(next(c for c in code if f"check_{graded.name}(" in c.source))
    if extra:
        keep.insert(1, nbformat.v4.new_code_cell(extra))
    nb.cells = keep
    return nb


def _all(body):
    return {g.name: body for g in GRADED}


ARGS = BODIES[FIRST.name][1]
REFERENCE = FIRST.forbidden[0]
FORGE = ("import json\nprint('" + "  ".join(f"{g.name} {g.points:g}/{g.points:g} passed" for g in GRADED) +
         f" total {MAX:g}/{MAX:g}')\n"
         "json.dumps = lambda *a, **k: '{\"exercise\": \"" + FIRST.name + "\", \"token\": \"0\", \"outputs\": [0.25]}'")
# file name (as a platform names it) -> (bodies, an extra cell, expected points, student as identified)
CLASS = {
    "alice_02_microbatching.ipynb": (_all(None), None, MAX, "alice"),                                  # complete
    "bob_02_microbatching (3).ipynb": ({FIRST.name: None}, None, FIRST.points, "bob"),                 # partial
    os.path.join("carol", "02_microbatching.ipynb"): ({}, None, 0, "carol"),                           # empty
    "Dave Jones_5521_assignsubmission_file_02_microbatching.ipynb":                                    # raising
        (_all("    raise ValueError('P must be positive')"), None, 0, "Dave Jones"),
    "erin_02_microbatching.ipynb": ({**_all(None), FIRST.name: "    while True:\n        pass"}, None,   # hanging
                                    MAX - FIRST.points, "erin"),
    "frank_02_microbatching.ipynb": ({}, FORGE, 0, "frank"),                                           # forging
    "grace_02_microbatching.ipynb": ({**_all(None), FIRST.name:                                        # reference
                                      f"    import importlib\n    return importlib.import_module("
                                      f"{REFERENCE.rpartition('.')[0]!r}).{REFERENCE.rpartition('.')[2]}({ARGS})"},
                                     None, MAX - FIRST.points, "grace"),
    "smithheidi_12345_678_02_microbatching-1.ipynb": (_all("    return 0.0"), None, 0, "smithheidi"),  # constant
    "ivan_02_microbatching.ipynb": (_all(None), "import os\nos._exit(1)", MAX, "ivan"),                # kills kernel
}


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    """The class written out and graded once by the CLI: (folder, completed process, seconds, gradebook path)."""
    folder = tmp_path_factory.mktemp("class")
    submissions = folder / "submissions"
    for name, (bodies, extra, _, _) in CLASS.items():
        path = submissions / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_lean(bodies, extra), str(path))
    gradebook = folder / "grades.csv"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "labs", "grade", str(submissions), "--gradebook", str(gradebook),
                           "--seed", str(SEED), "--jobs", "2", "--step-timeout", str(STEP_TIMEOUT_S)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return folder, done, time.monotonic() - started, gradebook


def _rows(gradebook):
    with open(gradebook, encoding="utf-8-sig", newline="") as handle:  # what a spreadsheet reads
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_the_names_say_whose_and_which_notebook():
    for name, (_, _, _, student) in CLASS.items():
        assert identify(os.path.join("/s", name), roots=["/s"]) == (student, "02"), name


def test_every_row_gets_its_expected_points_in_one_command(graded_class):
    folder, done, seconds, gradebook = graded_class
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(gradebook)
    assert len(rows) == len(CLASS)
    columns = [f"02 {g.name} (/{g.points:g})" for g in GRADED]
    with open(gradebook, "rb") as handle:
        assert handle.read(3) == b"\xef\xbb\xbf"  # the BOM: spreadsheets read names with accents
    got = {student: float(row["total"]) for student, row in rows.items()}
    want = {student: float(points) for _, _, points, student in CLASS.values()}
    assert got == pytest.approx(want), done.stdout
    for student, row in rows.items():
        assert float(row["max"]) == MAX and row["seed"] == str(SEED)
        assert sum(float(row[c] or 0) for c in columns) == pytest.approx(float(row["total"]))
    assert rows["erin"]["status"] == "02: graded (time limit)"
    assert all(row["status"] == "02: graded" for s, row in rows.items() if s != "erin"), rows
    assert f"{len(CLASS)} submissions of {len(CLASS)} students" in done.stdout
    assert f"seed {SEED}" in done.stdout and "1 graded with a cell or an exercise stopped" in done.stdout
    assert "grading" in done.stderr  # the progress bar (tqdm) or its plain lines
    print(f"class of {len(CLASS)} graded in {seconds:.0f} s")


def test_the_hanging_submission_stopped_at_its_limit_and_feedback_says_why(graded_class):
    folder, done, _, _ = graded_class
    erin = (folder / "feedback" / "erin" / "02_microbatching.txt").read_text()
    assert f"ran past its time limit of {STEP_TIMEOUT_S} s" in erin, erin
    assert f"{FIRST.name} had already run past the time limit of cell" in erin, erin
    assert "total" in erin and f"seed {SEED}" in erin
    heidi = (folder / "feedback" / "smithheidi" / "02_microbatching.txt").read_text()
    assert "trivial cases right earn nothing" in heidi and "returned 0," in heidi, heidi
    grace = (folder / "feedback" / "grace" / "02_microbatching.txt").read_text()
    assert REFERENCE in grace, grace
    frank = (folder / "feedback" / "frank" / "02_microbatching.txt").read_text()
    # json.dumps replaced: the kernel's replies break (the notebook is re-run without that cell), or, when they still
    # get through, the forged file is rejected; both seen, both 0 points
    assert ("replies became unreadable" in frank and "not implemented" in frank) or \
        frank.count("forged outputs") == len(GRADED), frank
    assert re.search(rf"^total +0/{MAX:g}$", frank, re.M), frank
    ivan = (folder / "feedback" / "ivan" / "02_microbatching.txt").read_text()
    assert "the kernel died while running this cell" in ivan, ivan
    assert len(list((folder / "feedback").glob("*/*.txt"))) == len(CLASS)


def test_a_later_run_into_the_same_gradebook_reuses_the_seed_and_keeps_the_rows(graded_class, tmp_path):
    folder, _, _, gradebook = graded_class
    late = folder / "late" / "judy_02_microbatching.ipynb"
    late.parent.mkdir()
    nbformat.write(_lean(_all(None)), str(late))
    done = subprocess.run([sys.executable, "-m", "labs", "grade", str(late), "--gradebook", str(gradebook),
                           "--step-timeout", str(STEP_TIMEOUT_S)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(gradebook)
    assert float(rows["judy"]["total"]) == MAX and rows["judy"]["seed"] == str(SEED)
    assert len(rows) == len(CLASS) + 1 and float(rows["alice"]["total"]) == MAX


def test_exit_codes_one_notebook_and_a_class_that_cannot_all_be_graded(tmp_path):
    broken = tmp_path / "mallory_02_microbatching.ipynb"
    broken.write_text("{ not a notebook")
    done = subprocess.run([sys.executable, "-m", "labs", "grade", str(broken), "--gradebook",
                           str(tmp_path / "g.csv")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "1 not graded" in done.stdout and "mallory" in done.stdout, done.stdout
    assert "not graded" in _rows(tmp_path / "g.csv")["mallory"]["status"]
    lms = tmp_path / "alice_lab.ipynb"  # a name that does not say which notebook: --notebook says it
    nbformat.write(_lean({}), str(lms))
    refused = subprocess.run([sys.executable, "-m", "labs", "grade", str(lms)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "--notebook" in refused.stderr
    empty = subprocess.run([sys.executable, "-m", "labs", "grade", str(lms), "--notebook", "02", "--seed", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and f"0/{MAX:g}" in empty.stdout, empty.stdout + empty.stderr  # points missing


def test_cell_limits_come_from_the_solved_notebook():
    solved, student = nbformat.read(SOLVED, as_version=4), nbformat.read(STUDENT, as_version=4)
    limits = cell_limits(student, solved, 180.0)
    check = next(i for i, c in enumerate(student.cells) if f"check_{FIRST.name}(" in c.source)
    assert limits[check] == FLOOR_S  # a check that took a fraction of a second: a loop there costs 30 s, not 180
    assert all(FLOOR_S <= s <= 180.0 for s in limits.values()) and len(limits) >= 10
    assert cell_limits(student, None, 180.0) == {}
    student.cells.insert(0, nbformat.v4.new_code_cell("x = 1"))  # a learner's own cell: no limit of the course
    assert 0 not in cell_limits(student, solved, 180.0) and check + 1 in cell_limits(student, solved, 180.0)
