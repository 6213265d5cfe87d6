"""Which course notebook a submitted file is, and whose it is, from the names learning platforms give files.

A file's notebook: the course notebook's name (``02_microbatching``) anywhere in the file name; else the one
``NN_`` prefix in it that is a course notebook's number; else what the caller says (``--notebook 02``). Its student:
the folder right below a folder the lecturer gave (``submissions/alice/02_microbatching.ipynb``, nbgrader's
``submitted/alice/02_microbatching/02_microbatching.ipynb``), else the file name without the notebook's name, copy
counters and the decorations platforms add:

    alice_02_microbatching.ipynb                                   -> alice
    bob_02_microbatching (3).ipynb                                 -> bob
    Alice Smith_1234_assignsubmission_file_02_microbatching.ipynb  -> Alice Smith   (Moodle)
    smithalice_12345_678_02_microbatching-1.ipynb                  -> smithalice    (Canvas; also ..._late_...)
    Copy of 05_interleaved - frank.ipynb                           -> frank
    carol/02_microbatching.ipynb (the file given alone)            -> carol         (its folder)

Stdlib only; ``course_notebooks()`` reads the checkout's ``solutions/`` (or ``notebooks/``) folder.
"""
from __future__ import annotations

import glob
import os
import re

from ..errors import InputError

__all__ = ["ROOT", "course_notebooks", "identify", "module_of", "reference_notebook"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
_MOODLE = re.compile(r"_\d+_assignsubmission_(?:file|onlinetext)_?.*$", re.I)
_CANVAS = re.compile(r"^([A-Za-z]+)(?:_late)?_\d+_\d+(?:_.*)?$", re.I)
_COPY = re.compile(r"\s*\(\d+\)|\bcopy of\b|[-_ ]copy\b|-\d+$", re.I)


def course_notebooks() -> dict[str, str]:
    """{number: file stem}: ``{"02": "02_microbatching", ...}`` from the checkout's solutions/ (or notebooks/)."""
    for folder in ("solutions", "notebooks"):
        stems = [os.path.basename(p)[:-len(".ipynb")] for p in glob.glob(os.path.join(ROOT, folder, "*.ipynb"))]
        found = {stem.split("_", 1)[0]: stem for stem in stems if re.match(r"^\d{2}[a-z]?_", stem)}
        if found:
            return dict(sorted(found.items()))
    return {}


def module_of(number: str) -> str:
    """The exercise module of notebook ``number`` (``"02"`` -> ``labs.exercises.nb02``)."""
    return f"labs.exercises.nb{number}"


def reference_notebook(number: str) -> str | None:
    """The solved notebook of ``number`` in the checkout (its recorded cell times calibrate the time limits)."""
    stem = course_notebooks().get(number)
    path = os.path.join(ROOT, "solutions", f"{stem}.ipynb") if stem else None
    return path if path and os.path.isfile(path) else None


def _number(stem: str, notebook: str | None, notebooks: dict, path: str) -> str:
    if notebook:
        number = notebook.split("_", 1)[0]
        if number not in notebooks:
            raise InputError(f"--notebook {notebook}: the course has no notebook {number} "
                             f"(it has {', '.join(notebooks)})")
        return number
    found = [n for n, name in notebooks.items() if name.lower() in stem.lower()]
    if len(found) == 1:
        return found[0]
    prefixes = sorted({m for m in re.findall(r"(?<![0-9])([0-9]{2}[a-z]?)_", stem) if m in notebooks})
    if len(found) > 1 or len(prefixes) != 1:
        held = found or prefixes
        raise InputError(f"cannot tell which course notebook {path!r} is (its name holds "
                         f"{' and '.join(held) if held else 'none'} of the course's notebook names): name it "
                         f"with --notebook NN, e.g. --notebook 02")
    return prefixes[0]


def identify(path: str, notebook: str | None = None, roots=()) -> tuple[str, str]:
    """(student, notebook number) of a submitted file; InputError saying what to pass when it cannot tell.

    ``notebook``: the number (or name) for every file (``--notebook``); ``roots``: the folders the lecturer gave,
    whose sub-folders are students.
    """
    notebooks = course_notebooks()
    base = os.path.basename(path)
    stem = base[:-len(".ipynb")] if base.lower().endswith(".ipynb") else base
    number = _number(stem, notebook, notebooks, path)
    absolute = os.path.abspath(path)
    for root in roots:  # a folder per student: the folder right below the one given
        relative = os.path.relpath(absolute, os.path.abspath(root))
        if not relative.startswith("..") and os.sep in relative:
            return relative.split(os.sep)[0], number
    full = notebooks[number]
    if full.lower() in stem.lower():
        rest = re.sub(re.escape(full), " ", stem, flags=re.I)
    else:  # "alice_02_draft": the notebook part runs from "02_" to the end
        rest = re.split(rf"(?<![0-9]){re.escape(number)}_", stem, maxsplit=1)[0]
    rest = _COPY.sub(" ", rest).strip(" _-.")
    rest = _MOODLE.sub("", rest)
    rest = _CANVAS.sub(r"\1", rest)
    student = re.sub(r"[\s_\-.]+", " ", rest).strip()
    if not student:
        student = os.path.basename(os.path.dirname(absolute))
    if not student:
        raise InputError(f"cannot tell whose submission {path!r} is: put each student's files in a folder named "
                         f"after them, or keep the student's name in the file name (alice_{full}.ipynb)")
    return student, number
