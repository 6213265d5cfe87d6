"""Every printed verdict can print False: each registered verdict (``labs.course.verdicts``) returns True on its
``holds`` cases and False on its planted ``fails`` cases, and every solution notebook's printed verdicts go through a
registered function, or their cell is listed in ``tests/unconverted_verdicts/NN_name.txt`` (a list that only
shrinks: a listed cell that no longer needs its line fails too). No rank or notebook starts."""
from __future__ import annotations

import ast
import glob
import importlib
import json
import os
import pkgutil
import re

import pytest

import labs.course
import labs.exercises
from labs.course import verdicts
from labs.course.verdicts import Case, Verdict, case, problems, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KNOWN = os.path.join(ROOT, "tests", "unconverted_verdicts")

for _package in (labs.course, labs.exercises):  # registration happens on import
    for _info in pkgutil.iter_modules(_package.__path__, _package.__name__ + "."):
        importlib.import_module(_info.name)

REGISTERED = sorted(verdicts.REGISTRY)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_verdict_says_yes_on_its_cases_and_no_on_its_planted_inputs(name):
    assert problems(verdicts.REGISTRY[name]) == []


def test_the_registry_check_itself_catches_a_verdict_that_cannot_fail():
    """Negative controls of the mechanism: a verdict that is always True, one that returns a string, and one that
    raises are reported; a registration without planted inputs is refused."""
    always = Verdict(lambda x: True, [case(1)], [case(2, why="planted")])
    assert [p.rpartition("<lambda>")[2] for p in problems(always)] == ["(2) [planted]: returned True, expected False"]
    assert "returned 'yes'" in problems(Verdict(lambda x: "yes", [case(1)], [case(2)]))[0]
    assert "raised ZeroDivisionError" in problems(Verdict(lambda x: 1 / x > 0, [case(1)], [case(0)]))[0]
    with pytest.raises(TypeError, match="planted input"):
        verdict(holds=[case(1)], fails=[])(lambda x: x)
    with pytest.raises(TypeError, match="planted input"):
        verdict(holds=[case(1)], fails=[(1,)])(lambda x: x)
    assert isinstance(case(1, why="w"), Case) and str(case(1, a=2, why="w")) == "(1, a=2) [w]"


def test_the_generic_verdicts_are_registered_with_their_notebook_reading():
    assert {"labs.course.verdicts.idle_in_band", "labs.course.verdicts.within_abs",
            "labs.course.timing.timing_holds"} <= set(REGISTERED)
    assert verdicts.yes(True) == "yes" and verdicts.yes(False) == "no"


# --- the scan of solutions/*.ipynb --------------------------------------------------------------------------------

# A printed verdict: "...: True", "... -> yes", "(== M on every rank -> yes)" (not "fork: no GPU in play").
VERDICT_LINE = re.compile(r"(?::|->)\s*(?:True|False)\b|(?::|->)\s*(?:yes|no)(?=$|[\s]*[;,.)|]|\s*$)")
CHECKS = ("all", "any", "bool", "isclose", "allclose", "equal")  # calls whose result is a yes/no


def _verdict_lines(cell) -> list[str]:
    text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return [line for line in text.splitlines() if VERDICT_LINE.search(line)]


def _called(node) -> str | None:
    return getattr(node.func, "id", None) or getattr(node.func, "attr", None) if isinstance(node, ast.Call) else None


def _yes_no(node) -> bool:
    """An expression whose value is a verdict computed in place: a comparison, and/or/not, all()/any(), or
    ``"yes" if ... else "no"``."""
    if isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return True
    if isinstance(node, ast.IfExp):
        return {getattr(node.body, "value", None), getattr(node.orelse, "value", None)} & {"yes", "no", True, False} != set()
    return _called(node) in CHECKS


def _printed(node):
    """The expressions a print shows: its arguments, through f-strings, string joins, % and tuples (not into other
    calls or comprehensions: their conditions are not what is printed)."""
    if isinstance(node, ast.JoinedStr):
        for value in node.values:
            yield from _printed(value)
    elif isinstance(node, ast.FormattedValue):
        yield from _printed(node.value)
    elif isinstance(node, (ast.BinOp, ast.Tuple)):
        for child in ([node.left, node.right] if isinstance(node, ast.BinOp) else node.elts):
            yield from _printed(child)
    else:
        yield node


def inline_verdicts(source: str, registered: set[str]) -> list[str]:
    """The verdicts a cell prints without a registered function: a printed comparison, and/or/not, all()/any(),
    yes/no choice, or a name the cell bound to one. (A registered call's arguments may compare freely.)"""
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    bound = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _yes_no(node.value)
             and _called(node.value) not in registered for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if _called(node) == "print":
            for arg in node.args:
                for shown in _printed(arg):
                    if (_yes_no(shown) or getattr(shown, "id", None) in bound) and _called(shown) not in registered:
                        found.append(ast.unparse(shown)[:80])
    return found


def _calls_registered(source: str, registered: set[str]) -> bool:
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return any(_called(node) in registered for node in ast.walk(tree))


def unconverted_cells(path: str, registered: set[str]) -> dict[str, str]:
    """{cell id: its first verdict line} for the code cells of a notebook that print a verdict not (only) through
    a registered function."""
    with open(path, encoding="utf-8") as handle:
        cells = json.load(handle)["cells"]
    found = {}
    for cell in cells:
        lines = _verdict_lines(cell) if cell["cell_type"] == "code" else []
        source = "".join(cell["source"])
        if lines and (inline_verdicts(source, registered) or not _calls_registered(source, registered)):
            found[cell["id"]] = lines[0]
    return found


def _known(notebook: str) -> dict[str, str]:
    """{cell id: "todo" or "exempt: why"} from tests/unconverted_verdicts/NN_name.txt."""
    path = os.path.join(KNOWN, os.path.basename(notebook).replace(".ipynb", ".txt"))
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        rows = [line.split(None, 1) for line in handle if line.strip() and not line.startswith("#")]
    return {row[0]: (row[1].strip() if len(row) > 1 else "") for row in rows}


SOLUTIONS = sorted(glob.glob(os.path.join(ROOT, "solutions", "*.ipynb")))
NAMES = {name.rpartition(".")[2] for name in REGISTERED}


@pytest.mark.parametrize("notebook", SOLUTIONS, ids=os.path.basename)
def test_every_printed_verdict_goes_through_a_registered_function(notebook):
    found, known = unconverted_cells(notebook, NAMES), _known(notebook)
    listed = os.path.relpath(os.path.join(KNOWN, os.path.basename(notebook).replace(".ipynb", ".txt")), ROOT)
    new = {cell: line for cell, line in found.items() if cell not in known}
    assert new == {}, (f"these cells print a verdict without a registered function (labs.course.verdicts, or "
                       f"@verdict in labs/exercises/nbNN.py, with a planted input that makes it False): {new}")
    with open(notebook, encoding="utf-8") as handle:
        ids = {cell.get("id") for cell in json.load(handle)["cells"]}
    stale = sorted(cell for cell, why in known.items()
                   if cell not in ids or (cell not in found and not why.startswith("exempt")))
    assert stale == [], f"converted (or gone): delete these cells' lines from {listed}: {stale}"


def test_the_scan_sees_inline_verdicts_and_accepts_registered_ones():
    """Negative controls of the scan: the old inline forms are caught; a registered call is not."""
    names = {"idle_in_band"}
    for inline in ['print("within 0.03 ->", "yes" if abs(a - b) <= 0.03 else "no")',
                   'print(f"within 0.03: {abs(a - b) <= 0.03}")', 'ok = a < b and c\nprint("holds:", ok)',
                   'print(f"all equal: {all(x == y for x, y in z)}")']:
        assert inline_verdicts(inline, names), inline
    for fine in ['print(f"within band: {idle_in_band(a, b)}")', 'ok = idle_in_band(abs(a), b > 0)\nprint(ok)',
                 'print(f"{sum(1 for m in ms if m > 0)} messages")', 'print(f"{x:.2f} ms")']:
        assert not inline_verdicts(fine, names), fine
    assert VERDICT_LINE.search("within 0.03 -> yes") and VERDICT_LINE.search("equal one process: True")
    assert VERDICT_LINE.search("(== M on every rank -> yes); rank 0") and not VERDICT_LINE.search("fork: no GPU")
