"""Grade a submitted notebook: execute it, pull each exercise's function out of the kernel, run its graded test.

    python -m labs grade notebooks/01_naive_pipeline.ipynb --json scores.json
    labs.grading.grade_notebook("notebooks/01_naive_pipeline.ipynb")   # the same, as a dict

An exercise module ``labs/exercises/nbNN.py`` declares what is graded (``NN`` is the notebook file's 2-digit prefix):

    GRADED = [Graded(name="split_stages", points=2, test=_graded_split_stages)]

``name`` is the function's name in the notebook; ``test(fn)`` raises AssertionError (with a message saying which
case failed) and returns None when every case passes. The notebook runs top to bottom in a fresh kernel whose working
folder is the notebook's own (so its setup cell finds ``labs`` one folder up); cells that raise do not stop it. Then
one more cell, in the same kernel, runs each test on the function the notebook defined. A missing function, a
NotImplementedError, an exception or a failed assertion scores 0 for that exercise, with the reason; the other
exercises are graded as usual.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

_MARK = "LABS_GRADE_RESULT "
_LABS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Graded:
    name: str  # the function's name in the notebook
    points: float
    test: Callable  # test(fn): raises AssertionError on a failing case, returns None when all pass


def module_for(path: str) -> str:
    """``labs.exercises.nbNN`` for a notebook file named ``NN_something.ipynb``."""
    match = re.match(r"(\d{2})_", os.path.basename(path))
    if not match:
        raise ValueError(f"cannot tell which exercises {path!r} holds: a course notebook's file name starts with "
                         f"its two-digit number, e.g. 01_naive_pipeline.ipynb")
    return f"labs.exercises.nb{match.group(1)}"


def _not_implemented(error: BaseException) -> bool:
    if isinstance(error, NotImplementedError):
        return True
    text = getattr(error, "worker_traceback", "")  # labs.RankFailed: the rank's own traceback
    return "NotImplementedError" in text


def run_graded(module_name: str, namespace: dict) -> list[dict]:
    """Run every graded test of ``module_name`` on the functions found in ``namespace`` (inside the kernel)."""
    import importlib
    module = importlib.import_module(module_name)
    results = []
    for graded in module.GRADED:
        fn = namespace.get(graded.name)
        passed, message = False, ""
        if not callable(fn):
            message = (f"no function named {graded.name} in the notebook (its cell was not run, raised, or the "
                       f"function was renamed)")
        else:
            try:
                graded.test(fn)
                passed, message = True, "all cases passed"
            except BaseException as error:  # noqa: BLE001 - a submission may raise anything, even SystemExit
                if _not_implemented(error):
                    message = "not implemented (raises NotImplementedError)"
                elif isinstance(error, AssertionError):
                    message = str(error) or "a graded case failed"
                else:
                    message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        entry = {"name": graded.name, "points": float(graded.points) if passed else 0.0,
                 "max_points": float(graded.points), "passed": passed, "message": message[:2000]}
        print(_MARK + json.dumps(entry), flush=True)
        results.append(entry)
    return results


def _grading_source(module_name: str) -> str:
    return (f"import sys as _sys\n"
            f"if {_LABS_ROOT!r} not in _sys.path:\n"
            f"    _sys.path.append({_LABS_ROOT!r})\n"
            f"import labs.grading as _labs_grading\n"
            f"_labs_grading.run_graded({module_name!r}, globals())\n")


def grade_notebook(path: str, timeout: float = 300.0, cwd: str | None = None, module: str | None = None) -> dict:
    """Execute the notebook at ``path`` and grade it; ``cwd`` defaults to the notebook's folder."""
    import nbformat
    from nbclient import NotebookClient

    import importlib
    module = module or module_for(path)
    graded_list = importlib.import_module(module).GRADED  # an unknown notebook number fails here, before running it
    cwd = os.path.abspath(cwd or os.path.dirname(os.path.abspath(path)))
    folder = tempfile.mkdtemp(prefix="labs-grade-")
    try:
        copy = os.path.join(folder, os.path.basename(path))
        shutil.copyfile(path, copy)  # the submission itself is never touched
        nb = nbformat.read(copy, as_version=4)
        grade_cell = nbformat.v4.new_code_cell(_grading_source(module))
        nb.cells.append(grade_cell)
        client = NotebookClient(nb, timeout=int(timeout), kernel_name="python3", allow_errors=True,
                                interrupt_on_timeout=True, resources={"metadata": {"path": cwd}})
        deadline = time.monotonic() + timeout
        errors = []
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                # The whole notebook shares one budget; the grading cell always gets at least a minute.
                left = deadline - time.monotonic()
                client.timeout = int(max(left, 60.0 if cell is grade_cell else 1.0)) + 1  # nbclient wants whole seconds
                client.execute_cell(cell, index)
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "error" and cell is not grade_cell:
                        errors.append({"cell": index, "error": f"{output.get('ename')}: {output.get('evalue')}"[:300]})
        text = "".join(o.get("text", "") for o in grade_cell.get("outputs", []) if o.get("output_type") == "stream")
        found = {}
        for line in text.splitlines():
            if line.startswith(_MARK):
                entry = json.loads(line[len(_MARK):])
                found[entry["name"]] = entry
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    exercises = []
    for graded in graded_list:
        exercises.append(found.get(graded.name) or {
            "name": graded.name, "points": 0.0, "max_points": float(graded.points), "passed": False,
            "message": "not graded: the grading cell did not finish (time-out or crash)"})
    return {"notebook": os.path.abspath(path), "module": module, "exercises": exercises,
            "score": sum(e["points"] for e in exercises), "max_score": sum(e["max_points"] for e in exercises),
            "cell_errors": errors}


def format_table(result: dict) -> str:
    rows = [(e["name"], f"{e['points']:g}/{e['max_points']:g}", "passed" if e["passed"] else e["message"])
            for e in result["exercises"]]
    width = max([len("exercise")] + [len(r[0]) for r in rows])
    lines = [result["notebook"], f"{'exercise':<{width}}  {'points':>7}  result"]
    for name, points, message in rows:
        first, *rest = message.splitlines() or [""]
        lines.append(f"{name:<{width}}  {points:>7}  {first}")
        lines.extend(f"{'':<{width}}  {'':>7}  {more}" for more in rest[:8])
    lines.append(f"{'total':<{width}}  {format(result['score'], 'g') + '/' + format(result['max_score'], 'g'):>7}")
    if result.get("cell_errors"):
        lines.append("cells that raised while executing: " +
                     ", ".join(f"cell {e['cell']} ({e['error'].splitlines()[0][:80]})" for e in result["cell_errors"]))
    return "\n".join(lines)


def main(args) -> int:
    """``python -m labs grade NOTEBOOK [--json FILE] [--timeout S]``: print the score table, write JSON if asked."""
    result = grade_notebook(args.notebook, timeout=args.timeout)
    print(format_table(result))
    if getattr(args, "json", None):
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"scores written to {args.json}")
    return 0
