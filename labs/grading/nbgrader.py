"""nbgrader and the course grader: the autograded test cells ``tools/make_nbgrader_source.py`` writes, and the
scores of ``python -m labs grade --gradebook ... --nbgrader COURSE`` written into nbgrader's gradebook.

A test cell (nbgrader metadata: grade, locked, the exercise's points) holds a hidden test:

    ### BEGIN HIDDEN TESTS
    from labs.grading.nbgrader import autograde
    autograde(globals(), "labs.exercises.nb02", "idle_fraction", seed=1234)
    ### END HIDDEN TESTS

``autograde`` returns the points earned, in [0, points]: as the cell's last value it is the cell's ``execute_result``,
which nbgrader reads as partial credit (``nbgrader.utils.determine_grade``: an error output or any stderr output
gives 0, a number that many points, *no output full points*, so it always returns a number and keeps the learner's
code from writing to the cell's stderr). What failed is printed; nbgrader's feedback shows it. The kernel only
computes the learner's outputs on the cases (``kernel.run_cases``, forbidden references fail their case); a fresh
``python -m labs.grading.nbgrader score ...`` process draws the same cases again and scores the outputs with
``protocol.score_outputs``: expected values are never in the kernel. The cases are ``random.Random(f"{seed}:{name}")``
draws, the same as ``python -m labs grade --seed`` (one seed per class; ``LABS_GRADE_SEED`` overrides it).

Trust: nbgrader runs its test cells in the learner's kernel after the learner's code, so a notebook can replace
what a test cell calls and print any number. ``write_scores`` closes that: after ``nbgrader autograde``, grade the
submissions with ``python -m labs grade COURSE/submitted --gradebook grades.csv --nbgrader COURSE``; each test cell's
grade is set to the course grader's points (``manual_score``, which nbgrader's totals, export and feedback use) and
each exercise's answer cell gets the grader's message as its comment.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile

__all__ = ["autograde", "main", "write_scores"]

_HELPER_TIMEOUT_S = 600.0


def _graded(module: str, name: str):
    for graded in importlib.import_module(module).GRADED:
        if graded.name == name:
            return graded
    raise ValueError(f"{module} grades no exercise named {name!r}")


def _cases(graded, seed: int) -> list:
    return [tuple(case) for case in graded.cases(random.Random(f"{seed}:{graded.name}"))]


@contextlib.contextmanager
def _quiet():
    """Nothing the learner's code prints reaches the cell: Python's streams and file descriptors 1 and 2 (which
    ranks and C libraries write to) go to a scratch file while it runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink, open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def autograde(namespace: dict, module: str, name: str, seed: int | None = None) -> float:
    """Points earned by ``namespace[name]`` on exercise ``name`` of ``module`` (see the module docstring)."""
    from labs.grading.kernel import run_cases
    seed = int(os.environ.get("LABS_GRADE_SEED") or (seed if seed is not None else 0))
    graded = _graded(module, name)
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="labs-nbgrader-") as folder:
        path = os.path.join(folder, f"{name}-{token}.json")
        request = {"name": name, "cases": [list(c) for c in _cases(graded, seed)], "run": graded.run,
                   "forbidden": list(graded.forbidden), "token": token, "path": path}
        with _quiet():
            run_cases(namespace, request)
        result = _score_elsewhere(module, name, seed, path, token)
    points = max(0.0, min(float(result["points"]), float(result["max_points"])))
    print(f"{name}: {points:g}/{result['max_points']:g} (cases drawn with seed {seed})")
    if points < result["max_points"]:
        print(result["message"])
    return round(points, 4)


def _score_elsewhere(module: str, name: str, seed: int, path: str, token: str) -> dict:
    """``python -m labs.grading.nbgrader score ...`` with the labs this module belongs to: its JSON answer."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-m", "labs.grading.nbgrader", "score", module, name, str(seed), path,
                           token], capture_output=True, text=True, env=env, cwd=root, timeout=_HELPER_TIMEOUT_S)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"points": 0.0, "max_points": float(_graded(module, name).points),
                "message": f"0 points: the course grader could not score it: {done.stderr.strip()[-1500:]}"}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    """``score MODULE NAME SEED OUTPUTS TOKEN``: score the outputs file; one JSON line on stdout."""
    from labs.grading.protocol import GradingError, read_outputs, score_outputs
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 6 or args[0] != "score":
        print("usage: python -m labs.grading.nbgrader score MODULE NAME SEED OUTPUTS TOKEN", file=sys.stderr)
        return 2
    _, module, name, seed, path, token = args
    graded = _graded(module, name)
    cases = _cases(graded, int(seed))
    try:
        fraction, message = score_outputs(graded, cases, read_outputs(path, name, token, len(cases)))
    except GradingError as error:
        fraction, message = 0.0, f"0 points: {error}"
    print(json.dumps({"points": round(graded.points * fraction, 4), "max_points": float(graded.points),
                      "fraction": fraction, "message": message[:3000]}))
    return 0


def write_scores(course: str, results: dict) -> str:
    """Write the course grader's points into ``course``'s nbgrader gradebook; a line saying what was written.

    ``results``: {(student, number): result of ``grade_notebook``} for files laid out as nbgrader's
    ``submitted/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb`` (or ``autograded/...``): each exercise's test cell
    ``test_<exercise>`` gets ``manual_score`` = the points, the answer cell ``answer_<exercise>`` the message as its
    comment. A submission nbgrader has not autograded yet (no grade rows) is listed as missing.
    """
    from nbgrader.api import Gradebook, MissingEntry
    written, missing = 0, []
    with Gradebook("sqlite:///" + os.path.abspath(os.path.join(course, "gradebook.db"))) as gradebook:
        for (student, _), result in sorted(results.items()):
            path = result["notebook"]
            assignment = os.path.basename(os.path.dirname(path))
            notebook = os.path.splitext(os.path.basename(path))[0]
            for entry in result.get("exercises", []):
                try:
                    grade = gradebook.find_grade(f"test_{entry['name']}", notebook, assignment, student)
                except MissingEntry:
                    missing.append(f"{student}/{assignment}/{notebook}: test_{entry['name']}")
                    continue
                grade.manual_score = entry["points"]
                written += 1
                with contextlib.suppress(MissingEntry):
                    comment = gradebook.find_comment(f"answer_{entry['name']}", notebook, assignment, student)
                    comment.manual_comment = (f"{entry['name']}: {entry['points']:g}/{entry['max_points']:g} "
                                              f"(course grader, seed {result['seed']}): "
                                              + ("passed" if entry["passed"] else entry["message"]))
        gradebook.db.commit()
    note = f"nbgrader gradebook {course}/gradebook.db: {written} test-cell grades set to the course grader's points"
    return note + ("" if not missing else f"; not autograded by nbgrader yet (run `nbgrader autograde` first): "
                   + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))


if __name__ == "__main__":
    sys.exit(main())
