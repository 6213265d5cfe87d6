"""An exercise-only copy of a course notebook, for grading tests that need the graded functions, not the whole run.

    path = exercise_copy("solutions/05_interleaved.ipynb", tmp_folder)   # same file name, fewer cells

The copy keeps the setup cell (the first code cell), every cell that defines a graded name (``labs.exercises.nbNN
.GRADED``), and, transitively, every cell that defines a name those cells read from the notebook's globals (function
bodies included; found with ``ast``; the setup cell's own names, such as ``labs``, come from the setup cell). Cells are kept whole and in order, so each kept name ends with the value the
whole notebook gives it, as long as no dropped cell changes an object in place. The whole notebooks still run top to
bottom in the same suite: nbval executes every one of them, and notebook 01 is graded whole (tests/test_grading.py).
Why: executing 05 and 09 whole costs ~30 s per grading (their paced runs), ~150 s of the suite's 7 minutes of tests.
"""
from __future__ import annotations

import ast
import importlib
import os

import nbformat

from labs.grading import module_for


def _free(node) -> set[str]:
    """Names a top-level statement reads from the notebook's globals: a function's or class's body reads less its
    parameters and the names it binds itself (the walk is not scope-exact: a nested function's own locals count)."""
    reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    reads -= {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}  # parameters of lambdas and nested functions
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a}
        local = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        inner = {n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node}
        reads -= params | local | inner
        reads |= {n.id for d in args.defaults + [d for d in args.kw_defaults if d] for n in ast.walk(d)
                  if isinstance(n, ast.Name)}
    return reads


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at top level, names it reads from the globals) of a code cell; magics and shell lines
    skipped."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    binds: set[str] = set()
    reads: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            binds |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            binds |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        reads |= _free(node) - binds  # read after this cell bound it (loop and comprehension variables too)
    return binds, reads


def in_place_changes(source: str) -> set[str]:
    """Names whose object a cell changes in place at top level: ``name.attr = ...``, ``name[key] = ...`` (also
    augmented and deleted)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    changed = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                changed.add(base.id)
    return changed


def kept_cells(nb, graded: set[str]) -> list[int]:
    """Indices (into ``nb.cells``) of the code cells an exercise-only copy keeps (see the module docstring)."""
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    names = {i: _names(nb.cells[i].source) for i in code}
    # the setup cell's names (labs, os, sys) come from it: a later "import labs.viz.plots" rebinds labs to itself
    keep, wanted, done = {code[0]}, set(graded) | names[code[0]][1], set(names[code[0]][0])
    while wanted - done:
        name = (wanted - done).pop()
        done.add(name)
        for i in code:
            if name in names[i][0] and i not in keep:
                keep.add(i)
                wanted |= names[i][1]
    return sorted(keep)


def exercise_copy(path: str, folder) -> str:
    """Write the exercise-only copy of ``path`` into ``folder`` under the same file name; returns its path."""
    nb = nbformat.read(path, as_version=4)
    graded = {g.name for g in importlib.import_module(module_for(path)).GRADED}
    keep = set(kept_cells(nb, graded))
    nb.cells = [cell for i, cell in enumerate(nb.cells) if cell.cell_type != "code" or i in keep]
    copy = os.path.join(str(folder), os.path.basename(path))
    nbformat.write(nb, copy)
    return copy
