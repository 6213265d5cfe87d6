"""``python -m labs grade``: one submission (a score table), or a class (a gradebook, feedback files, a summary).

    python -m labs grade notebooks/02_microbatching.ipynb --json scores.json       # one notebook
    python -m labs grade alice_lab.ipynb --notebook 02                              # a name that does not say which
    python -m labs grade submissions/ --gradebook grades.csv                        # a class (folders or LMS names)

Exit codes. One notebook: 0 full marks, 1 points missing, 2 bad input (nothing ran), 3 not graded (the kernel did
not start, or the notebook's time limit ran out before an exercise was tried). A class: 0 every submission graded
(a student's hang or crash is a graded 0 for what broke), 1 some submission could not be graded (listed in the
summary), 2 bad input.
"""
from __future__ import annotations

import json
import os

from ..errors import InputError

__all__ = ["add_parser", "check", "main"]


def add_parser(sub) -> None:
    """The ``grade`` sub-command's options."""
    grade = sub.add_parser("grade", help="grade a submitted notebook (a score table), or a class into a gradebook")
    grade.add_argument("notebook", nargs="+", help="a submitted .ipynb; with --gradebook: files and folders of them")
    grade.add_argument("--notebook", dest="number", metavar="NN",
                       help="which course notebook the files are (e.g. 02), when their names do not say it")
    grade.add_argument("--gradebook", metavar="FILE.csv",
                       help="grade every submission given into one gradebook (a row per student; also FILE.json)")
    grade.add_argument("--feedback", metavar="DIR", help="with --gradebook: feedback files DIR/STUDENT/NN_name.txt "
                                                         "(default: feedback/ beside the gradebook)")
    grade.add_argument("--jobs", type=int, help="with --gradebook: submissions graded at once (default: one per 4 "
                                                "cores, at least 1)")
    grade.add_argument("--nbgrader", metavar="COURSE_DIR", help="with --gradebook: also write the points into this "
                                                                "nbgrader course's gradebook.db (after its autograde)")
    grade.add_argument("--json", metavar="FILE", help="one notebook: also write the scores as JSON to FILE")
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds for a whole notebook (default 600)")
    grade.add_argument("--step-timeout", type=float, default=180.0,
                       help="at most this many seconds for one cell or one exercise (cells of the course get less: "
                            "a few times what they take in the solved notebook)")
    grade.add_argument("--seed", type=int, help="draw the graded cases with this seed (default: a fresh one; for a "
                                                "class, the one its gradebook already records)")


def _readable(path: str) -> str | None:
    if not os.path.isfile(path):
        return f"no such file: {path} (give the path of a submitted .ipynb notebook)"
    if not path.endswith(".ipynb"):
        return f"{path} is not a notebook: grade takes a submitted .ipynb file"
    try:
        with open(path, encoding="utf-8") as handle:
            cells = json.load(handle).get("cells")
    except (OSError, ValueError, AttributeError) as error:
        return f"{path} is not a readable notebook ({type(error).__name__}): is it a saved .ipynb?"
    if not isinstance(cells, list):
        return f"{path} has no cells: is it a saved .ipynb?"
    return None


def check(args) -> str | None:
    """What is wrong with the command's files and options, found before anything runs (None when nothing)."""
    import importlib.util
    from .names import identify
    for path in filter(None, [args.json, args.gradebook]):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"cannot write {path}: the folder {folder} does not exist (create it or choose another path)"
    if args.jobs is not None and args.jobs < 1:
        return f"--jobs {args.jobs}: give 1 or more"
    if args.nbgrader and not os.path.isfile(os.path.join(args.nbgrader, "gradebook.db")):
        return (f"--nbgrader {args.nbgrader}: no gradebook.db there (give the nbgrader course folder, after "
                f"`nbgrader autograde`)")
    if args.gradebook:
        missing = [p for p in args.notebook if not os.path.exists(p)]
        return f"no such file or folder: {missing[0]}" if missing else None
    if args.feedback or args.jobs or args.nbgrader:
        return "--feedback, --jobs and --nbgrader grade a class: add --gradebook grades.csv"
    if len(args.notebook) != 1 or os.path.isdir(args.notebook[0]):
        return "several submissions or a folder: grade them into one gradebook with --gradebook grades.csv"
    path = args.notebook[0]
    problem = _readable(path)
    if problem:
        return problem
    try:
        _, number = identify(path, args.number)
    except InputError as error:
        return str(error)
    if importlib.util.find_spec(f"labs.exercises.nb{number}") is None:
        return f"the course has no notebook number {number} with graded exercises (see notebooks/)"
    return None


def _one(args) -> int:
    from .grader import format_table, grade_notebook
    from .names import identify, module_of
    path = args.notebook[0]
    _, number = identify(path, args.number)
    result = grade_notebook(path, timeout_s=args.timeout, module=module_of(number), seed=args.seed,
                            step_timeout_s=args.step_timeout)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"scores written to {args.json}")
    if result["status"].startswith("not graded"):
        return 3
    return 0 if result["score"] >= result["max_score"] else 1


def main(args) -> int:
    """Run ``python -m labs grade`` (after ``check``): the exit code (see the module docstring)."""
    if args.gradebook:
        from .batch import grade_class
        return grade_class(args.notebook, args.gradebook, notebook=args.number, seed=args.seed, jobs=args.jobs,
                           feedback=args.feedback, timeout_s=args.timeout, step_timeout_s=args.step_timeout,
                           nbgrader=args.nbgrader)
    return _one(args)
