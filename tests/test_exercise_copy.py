"""The exercise-only copies the grading tests grade (tests/exercise_copy.py) keep what the graded functions need and
nothing a dropped cell could still change. No kernel starts."""
import glob
import importlib
import os

import nbformat
import pytest

from labs.grading import module_for

from .exercise_copy import _names, exercise_copy, in_place_changes, kept_cells

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRADED_NOTEBOOKS = [p for p in sorted(glob.glob(os.path.join(ROOT, "solutions", "*.ipynb")))
                    + sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
                    if importlib.util.find_spec(module_for(p)) is not None]


@pytest.mark.parametrize("path", GRADED_NOTEBOOKS, ids=os.path.basename)
def test_a_copy_keeps_every_cell_that_binds_what_the_graded_functions_read(path):
    nb = nbformat.read(path, as_version=4)
    graded = {g.name for g in importlib.import_module(module_for(path)).GRADED}
    keep = kept_cells(nb, graded)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    names = {i: _names(nb.cells[i].source) for i in code}
    setup = names[code[0]][0]
    assert graded <= set().union(*(names[i][0] for i in keep))  # every graded name is defined in the copy
    needed = set().union(*(names[i][1] for i in keep)) - setup
    for i in set(code) - set(keep):
        assert not names[i][0] & (needed | graded), (i, names[i][0] & (needed | graded))  # no binder left out
    kept_names = set().union(*(names[i][0] for i in keep)) - setup
    assert all(not in_place_changes(nb.cells[i].source) & kept_names for i in set(code) - set(keep)), path


def test_a_dropped_cell_that_changes_a_kept_object_in_place_is_caught(tmp_path):
    """Negative control: a later cell that sets an attribute of a graded function (or an item of a table it reads)
    would make the copy differ from the whole notebook; in_place_changes names it."""
    assert in_place_changes("chunk_owner.__defaults__ = (2,)\ntable['x'] = 1\nfine = 3") == {"chunk_owner", "table"}
    path = os.path.join(ROOT, "solutions", "05_interleaved.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("interleaved_schedule.__wrapped__ = None"))
    planted = tmp_path / "planted"
    planted.mkdir()
    nbformat.write(nb, str(planted / os.path.basename(path)))
    with pytest.raises(AssertionError):
        test_a_copy_keeps_every_cell_that_binds_what_the_graded_functions_read(str(planted / os.path.basename(path)))
    copy = exercise_copy(path, tmp_path)
    assert len(nbformat.read(copy, as_version=4).cells) < len(nb.cells)
