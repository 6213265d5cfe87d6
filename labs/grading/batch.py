"""Grade a class in one command: every submission alone, one seed for all, a gradebook, feedback and a summary.

    python -m labs grade submissions/ --gradebook grades.csv [--feedback DIR] [--jobs N] [--seed S]

* **Which files.** Folders are searched for ``.ipynb`` files (checkpoints skipped); each file's notebook and student
  come from ``names.identify`` (a folder per student, or the names platforms give). Two files of one student for one
  notebook: the newest counts, the other is listed as left out; a file whose notebook cannot be told is listed too.
* **Each submission alone.** Each one is graded by its own ``python -m labs grade FILE --json ...`` process: a fresh
  kernel on a temporary copy, with the single notebook's time limits (``--timeout`` per notebook, cells calibrated on
  the solved notebook). A submission that hangs, crashes its kernel or even the grading process scores what it
  earned before (or is listed as not graded, with why) and never stops the batch; the process is killed at
  ``timeout_s`` + 120 s whatever happens.
* **One seed per class.** ``--seed``, else the seed an earlier run recorded in this gradebook (late submissions get
  the same cases), else a fresh one: two students with the same bug get the same points. It is in every row.
* **Several at once** (``--jobs``; default one per 4 cores, at least 1): a notebook runs a kernel and 4-8 paced
  ranks. No exercise scores a measured time today (schedules are judged on simulated steps, runs on gradients,
  counts and bytes), so sharing cores only lengthens wall time, which the calibrated limits allow for (5x the solved
  notebook's time). An exercise that does score a measured time declares ``Graded(timing=True)``; its notebooks are
  graded after the others, one at a time, with nothing else running.
* **Progress** on stderr (tqdm when installed, else a line per notebook); a **summary** at the end.
"""
from __future__ import annotations

import concurrent.futures
import glob
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from ..errors import InputError
from .gradebook import read_previous, write_feedback, write_gradebook
from .names import ROOT, course_notebooks, identify, module_of

__all__ = ["collect", "default_jobs", "grade_class"]


def default_jobs() -> int:
    """Submissions graded at once by default: one per 4 cores (a kernel and 4-8 ranks each), at least 1."""
    return max(1, (os.cpu_count() or 1) // 4)


def collect(paths, notebook=None):
    """([(student, number, file)], [(file, why left out)]) for the files and folders given."""
    roots = [p for p in paths if os.path.isdir(p)]
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += [f for f in glob.glob(os.path.join(p, "**", "*.ipynb"), recursive=True)
                      if ".ipynb_checkpoints" not in f.split(os.sep)]
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise InputError(f"no such file or folder: {p}")
    chosen, left_out = {}, []
    for f in sorted(files):
        try:
            key = identify(f, notebook, roots)
        except InputError as error:
            left_out.append((f, str(error)))
            continue
        if key in chosen:
            older, newer = sorted([chosen[key], f], key=os.path.getmtime)
            left_out.append((older, f"{key[0]} also submitted {newer}, which is newer"))
            chosen[key] = newer
        else:
            chosen[key] = f
    return [(s, n, f) for (s, n), f in sorted(chosen.items())], left_out


def _timing(number: str) -> bool:
    try:
        return any(getattr(g, "timing", False) for g in importlib.import_module(module_of(number)).GRADED)
    except ImportError:
        return False


def _grade_one(path: str, number: str, seed: int, timeout_s: float, step_timeout_s: float) -> dict:
    """One submission graded by its own process; a result dict (with "status") whatever happens to it."""
    with tempfile.TemporaryDirectory(prefix="labs-class-") as folder:
        out = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "labs", "grade", path, "--notebook", number, "--seed", str(seed),
                   "--json", out, "--timeout", str(timeout_s), "--step-timeout", str(step_timeout_s)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        try:
            _, stderr = process.communicate(timeout=timeout_s + 120)
            why = (stderr.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        except subprocess.TimeoutExpired:  # the grader itself is stuck: its whole session goes (its kernel polls
            os.killpg(process.pid, signal.SIGKILL)  # its parent and exits with it)
            process.communicate()
            why = f"the grader did not finish within {timeout_s + 120:.0f} s"
        if os.path.isfile(out):
            with open(out, encoding="utf-8") as handle:
                return json.load(handle)
    return {"notebook": os.path.abspath(path), "module": module_of(number), "seed": seed, "exercises": [],
            "score": 0.0, "max_score": 0.0, "cell_errors": [], "seconds": round(time.monotonic() - started, 1),
            "status": f"not graded: {why[:300]}"}


def _progress(total: int):
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="notebook", file=sys.stderr, desc="grading")
    except ImportError:
        class Lines:
            done = 0

            def update(self, n):
                self.done += n
                print(f"grading: {self.done}/{total} notebooks done", file=sys.stderr, flush=True)

            def close(self):
                pass
        return Lines()


def _run_all(submissions, seed, jobs, timeout_s, step_timeout_s) -> dict:
    results = {}
    bar = _progress(len(submissions))
    alone = [s for s in submissions if _timing(s[1])]
    shared = [s for s in submissions if s not in alone]
    for group, workers in ((shared, jobs), (alone, 1)):
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:  # the work is in the processes
            futures = {pool.submit(_grade_one, f, n, seed, timeout_s, step_timeout_s): (s, n)
                       for s, n, f in group}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return results


def grade_class(paths, gradebook: str, notebook=None, seed=None, jobs=None, feedback=None, timeout_s=600.0,
                step_timeout_s=180.0, nbgrader=None) -> int:
    """Grade every submission in ``paths`` into ``gradebook``; print the summary; the exit code (0 all graded, 1 some
    not). Raises InputError when nothing can be graded."""
    submissions, left_out = collect(paths, notebook)
    if not submissions:
        raise InputError("no submission to grade in " + ", ".join(paths) +
                         "".join(f"\n  left out {f}: {why}" for f, why in left_out))
    previous_seed, previous = read_previous(gradebook)
    seed = seed if seed is not None else previous_seed
    seed = secrets.randbits(32) if seed is None else int(seed)
    if previous_seed is not None and previous_seed != seed:
        previous = {}  # other cases: the earlier rows are not comparable, so they are not kept
    jobs = jobs or default_jobs()
    started = time.monotonic()
    fresh = _run_all(submissions, seed, jobs, timeout_s, step_timeout_s)
    results = {**previous, **fresh}
    write_gradebook(gradebook, results, seed, left_out)
    feedback = feedback or os.path.join(os.path.dirname(os.path.abspath(gradebook)), "feedback")
    write_feedback(feedback, fresh, course_notebooks())
    if nbgrader:
        from .nbgrader import write_scores
        print(write_scores(nbgrader, fresh))
    statuses = [r["status"] for r in fresh.values()]
    not_graded = [k for k, r in fresh.items() if r["status"].startswith("not graded")]
    print(f"{len(fresh)} submissions of {len({s for s, _ in fresh})} students graded in "
          f"{time.monotonic() - started:.0f} s ({jobs} at a time), every one's cases drawn with seed {seed}: "
          f"{statuses.count('graded')} graded, {statuses.count('graded (time limit)')} graded with a cell or an "
          f"exercise stopped at its time limit, {len(not_graded)} not graded")
    for (student, number), result in sorted(fresh.items()):
        if result["status"] != "graded":
            print(f"  {student} {number}: {result['score']:g}/{result['max_score']:g}, {result['status']}")
    for (student, number), result in sorted(fresh.items()):
        if result.get("review"):
            print(f"  {student} {number}: read by hand, " + "; ".join(result["review"]))
    for f, why in left_out:
        print(f"  left out {f}: {why}")
    print(f"gradebook: {gradebook} (every result in {os.path.splitext(gradebook)[0]}.json); feedback: "
          f"{feedback}{os.sep}STUDENT{os.sep}NN_name.txt")
    unidentified = [f for f, why in left_out if "newer" not in why]
    return 1 if not_graded or unidentified else 0
