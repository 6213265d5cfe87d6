"""Grade a submitted notebook: the learner's kernel computes outputs, the grader scores them in its own process.

    python -m labs grade notebooks/02_microbatching.ipynb --json scores.json
    grade_notebook("notebooks/02_microbatching.ipynb")   # the same, as a dict

What an exercise declares (``Graded``) and how outputs are read and scored: ``protocol.py``. How a notebook is graded
(``kernel.py`` is the kernel side, ``session.py`` the kernel's time limits):

1. The notebook and the course's ``labs`` are copied into a temporary folder; a fresh kernel runs the copy's code
   cells there, top to bottom (a cell that raises does not stop it). Deleting files harms only the copy.
2. The grader draws every exercise's cases now, in its own process (``cases(rng)``, one ``random.Random`` per
   exercise from the seed, which is in the result: grade a class with one ``--seed``).
3. For each exercise it sends, as one IPython *user expression* (plain ``eval``: input and AST transformers never
   see it), the source of ``labs/grading/kernel.py`` read from the grader's own disk, the cases, the forbidden
   references and a fresh file name. The kernel calls the learner's function on each case (through ``run`` if the
   exercise has one), with the forbidden references' code swapped for one that fails the case, converts what comes
   back with ``plain`` and writes it as JSON. Expected values never enter the kernel; stdout is never read.
4. The grader reads that JSON (never a pickle), rejects it unless it has exactly the fields, name, token and number
   of outputs it asked for, and scores it with ``Graded.score`` here; points are capped at the maximum.

A cell or an exercise that runs past its time limit is interrupted (the kernel is killed if it will not stop); a
kernel that exits (``os._exit``, a kill) is restarted and the notebook re-run without the cell that killed it, so the
other exercises are still graded. What broke scores 0, with the reason. This is tamper-resistant grading, not a
sandbox: see the README for what it does not protect against.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import secrets
import shutil
import tempfile
import time

from ..errors import InputError
from .limits import cell_limits
from .names import reference_notebook
from .protocol import Graded, module_for, score_outputs
from .review import review_notes
from .session import run_session

__all__ = ["format_table", "grade_notebook", "status_of"]

_LABS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_KERNEL_SOURCE = os.path.join(_LABS_DIR, "grading", "kernel.py")


def _entry(graded: Graded, fraction: float, message: str) -> dict:
    return {"name": graded.name, "points": round(float(graded.points) * fraction, 4),
            "max_points": float(graded.points), "passed": fraction >= 1.0, "fraction": round(fraction, 4),
            "message": message[:3000]}


def _expression(source: str, request: dict) -> str:
    """One Python expression that runs ``source``'s ``run_cases`` on the user's namespace with ``request``.

    The expression is evaluated in the learner's namespace, so it takes ``exec``, ``compile`` and ``globals`` from
    the builtins module, not by bare name: a learner's own function called ``compile`` does not break grading."""
    return (f"(lambda b, ns: (b.exec(b.compile({source!r}, '<labs grading>', 'exec'), ns), "
            f"ns['run_cases'](b.globals(), {json.dumps(request)!r}))[1])"
            f"(__import__('builtins'), {{'__name__': 'labs_grading_kernel'}})")


def _draw_cases(graded_list, seed: int) -> list:
    """Each exercise's cases from its own ``random.Random(f"{seed}:{name}")``: the same cases for one seed whichever
    exercises come before it, here and in nbgrader's test cells (``nbgrader.py``)."""
    drawn = []
    for graded in graded_list:
        cases = [tuple(case) for case in graded.cases(random.Random(f"{seed}:{graded.name}"))]
        json.dumps(cases)  # cases must be plain data: a TypeError here is a bug in the exercise module
        drawn.append((graded, cases))
    return drawn


def _copy_course(path: str, folder: str) -> str:
    """Copy ``labs`` and the notebook into ``folder`` (as root/labs and root/<notebook's folder>/); the copy's path."""
    shutil.copytree(_LABS_DIR, os.path.join(folder, "labs"), ignore=shutil.ignore_patterns("__pycache__"))
    work = os.path.join(folder, os.path.basename(os.path.dirname(os.path.abspath(path))) or "notebook")
    os.makedirs(work, exist_ok=True)
    copy = os.path.join(work, os.path.basename(path))
    shutil.copyfile(path, copy)
    return copy


def _load(path: str):
    import nbformat
    if not os.path.isfile(path):
        raise InputError(f"no notebook at {path!r}")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - nbformat raises several kinds
        raise InputError(f"{path!r} is not a Jupyter notebook (.ipynb) that can be read: {error}") from None


def grade_notebook(path: str, timeout_s: float = 600.0, module: str | None = None, seed: int | None = None,
                   step_timeout_s: float = 180.0, reference: str | None = "auto") -> dict:
    """Execute a copy of the notebook at ``path`` in a fresh kernel and grade it (see the module docstring).

    ``timeout_s``: seconds for the whole notebook (cells, grading, restarts); ``step_timeout_s``: at most, for one
    cell or one exercise; each cell of the course's own gets a limit calibrated on the solved notebook ``reference``
    (``"auto"``: ``solutions/`` of this checkout; None: ``step_timeout_s`` for every cell; see ``limits.py``).
    ``module``: the exercise module (default: from the file name's ``NN_``). ``seed`` fixes the drawn cases
    (default: a fresh random seed, reported in the result). The notebook always runs in a temporary copy beside a
    copy of ``labs``. Returns a dict: ``exercises`` (name, points, max_points, passed, fraction, message each),
    ``score``, ``max_score``, ``cell_errors``, ``review`` (``review.review_notes``: cells to read by hand), ``seed``,
    ``seconds``, ``status`` (``status_of``).
    Raises InputError for a file that is not a course notebook or has no graded exercises.
    """
    module = module or module_for(path)
    try:
        graded_list = importlib.import_module(module).GRADED  # an unknown number fails here, before any kernel
    except ModuleNotFoundError:
        raise InputError(f"no graded exercises for {os.path.basename(path)!r}: there is no {module}") from None
    nb = _load(path)
    if reference == "auto":
        reference = reference_notebook(module.rsplit(".nb", 1)[-1])
    limits = cell_limits(nb, _load(reference), step_timeout_s) if reference else {}
    seed = secrets.randbits(32) if seed is None else int(seed)
    drawn = _draw_cases(graded_list, seed)
    with open(_KERNEL_SOURCE) as handle:
        source = handle.read()
    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix="labs-grade-")
    try:
        copy = _copy_course(path, folder)
        cells = [(index, cell.source) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        answers, cell_errors = run_session(
            cells, drawn, lambda request: _expression(source, request), workdir=os.path.dirname(copy),
            root=folder, results=os.path.join(folder, "results"), timeout_s=timeout_s, step_timeout_s=step_timeout_s,
            cell_limits=limits)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    exercises = []
    for graded, cases in drawn:
        outputs, why = answers.get(graded.name, (None, "not graded"))
        if outputs is None:
            exercises.append(_entry(graded, 0.0, why))
        else:
            fraction, message = score_outputs(graded, cases, outputs)
            exercises.append(_entry(graded, fraction, message + (f"\n{why}" if why else "")))
    result = {"notebook": os.path.abspath(path), "module": module, "seed": seed, "exercises": exercises,
              "score": round(sum(e["points"] for e in exercises), 4),
              "max_score": sum(e["max_points"] for e in exercises), "cell_errors": cell_errors,
              "review": review_notes(cells), "seconds": round(time.monotonic() - started, 1)}
    result["status"] = status_of(result)
    return result


def status_of(result: dict) -> str:
    """"graded", "graded (time limit)" (a cell or an exercise was stopped at its limit, and scored for what it had
    done) or "not graded: why" (the kernel did not start, or the notebook's time limit ran out before an exercise
    was tried: the score is not the submission's)."""
    texts = [e["message"] for e in result["exercises"]]
    for text in texts:
        if "not graded: the kernel did not start" in text or "not graded: the notebook's time limit" in text:
            return "not graded: " + text.split("not graded: ", 1)[1].splitlines()[0][:160]
    stopped = [t for t in texts if "time limit" in t or "did not stop within" in t]
    stopped += [e["error"] for e in result.get("cell_errors", []) if "time limit" in e["error"] or "did not stop"
                in e["error"]]
    return "graded (time limit)" if stopped else "graded"


def format_table(result: dict) -> str:
    """``grade_notebook``'s result as a table: one row per exercise (points, message), the total, the seed."""
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
    if result.get("review"):
        lines.append("cells for the lecturer to read (they touch the grading machinery; points unchanged): " +
                     "; ".join(result["review"]))
    lines.append(f"cases drawn with seed {result.get('seed')}")
    return "\n".join(lines)
