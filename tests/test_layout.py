"""The package's layout holds: rooms by layer, every import pointing down, no cycle, small modules with ``__all__``,
no torch below the models, and the README's map naming real files. Reads the source with ``ast`` (function-level
imports included); one fresh interpreter checks which imports really load torch. No rank or notebook starts."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = os.path.join(ROOT, "labs")
MAX_LINES = 300

# Layers, lowest first: a module may import from its own layer and any layer below (labs/__init__.py, the public
# API, may import anything; nothing inside the package imports it).
LAYERS = {"errors": 0, "checks": 0, "theory": 0, "schedules": 1, "timeline": 2, "viz": 3, "models": 3, "parallel": 4,
          "runtime": 5, "pipeline": 6, "course": 7, "grading": 8, "exercises": 9, "__main__": 10, "": 11}
NO_TORCH = ("errors", "checks", "theory", "schedules", "timeline", "viz")  # no torch import, not even inside a function


def _modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of the package (a package's name for its __init__)."""
    found = {}
    for folder, dirs, files in os.walk(LABS):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                parts = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(folder, name)
    return found


MODULES = _modules()


def _tree(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read(), path)


def _imports(module: str) -> set[str]:
    """The labs modules ``module`` imports anywhere in its file (``from X import y`` counts X.y when it is a
    module, X otherwise), and "torch" when it imports torch."""
    path = MODULES[module]
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "torch":
                found.add("torch")
            elif name.split(".")[0] == "labs":
                found.add(name)
    return found


GRAPH = {module: _imports(module) - {"torch"} for module in MODULES}


def _room(module: str) -> str:
    """``labs.timeline.trace`` -> "timeline"; ``labs.theory`` -> "theory"; ``labs`` -> ""."""
    return module.split(".")[1] if "." in module else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node, or with a self-loop (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_sees_function_level_and_relative_imports():
    """The parser itself: a function-level import counts, a relative one resolves, and a cycle is found."""
    assert "labs.timeline.simulator" in GRAPH["labs.viz.text"]  # a module-level relative import
    assert "labs.course.capstone" in GRAPH["labs.course.torch_bridge"]
    assert "labs.grading.cli" in GRAPH["labs.__main__"]  # imported inside main()
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]] and _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    assert _cycles(GRAPH) == [], "import cycles (function-level imports included)"


def test_no_import_cycle_between_folders():
    rooms: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        rooms.setdefault(_room(module), set()).update(_room(t) for t in targets if _room(t) != _room(module))
    assert _cycles(rooms) == []


def test_every_import_points_down_the_layers():
    wrong = [f"{module} (layer {LAYERS[_room(module)]}) imports {target} (layer {LAYERS[_room(target)]})"
             for module, targets in GRAPH.items() if module != "labs"
             for target in targets if LAYERS[_room(target)] > LAYERS[_room(module)]]
    assert wrong == []


def test_models_and_viz_stand_apart_and_models_use_only_the_base():
    """Both sit on layer 3: the models need only errors/checks/theory, the pictures no model."""
    wrong = [f"{module} imports {target}" for module, targets in GRAPH.items()
             for target in targets
             if (_room(module) == "models" and LAYERS[_room(target)] != 0 and _room(target) != "models")
             or (_room(module) == "viz" and _room(target) == "models")]
    assert wrong == []


def _neighbour_stages(module: str) -> list[int]:
    """Lines computing ``stage + 1`` or ``stage - 1`` (a name or an attribute called stage)."""
    lines = []
    for node in ast.walk(_tree(MODULES[module])):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))
                and isinstance(node.right, ast.Constant) and node.right.value == 1
                and (getattr(node.left, "id", None) == "stage" or getattr(node.left, "attr", None) == "stage")):
            lines.append(node.lineno)
    return lines


def test_which_stage_a_message_goes_to_is_written_once():
    """Only labs.schedules.lowering computes a neighbour stage; everything else asks it."""
    assert _neighbour_stages("labs.schedules.lowering"), "the check does not see the lowering's own rule"
    found = {m: lines for m in MODULES if m != "labs.schedules.lowering" and (lines := _neighbour_stages(m))}
    assert found == {}, f"stage +/- 1 outside labs.schedules.lowering: {found}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_is_small_and_declares_all(module):
    with open(MODULES[module], encoding="utf-8") as handle:
        lines = handle.read().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it by what it does"
    tree = _tree(MODULES[module])
    declared = [node for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                and any(getattr(t, "id", None) == "__all__"
                        for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))]
    assert declared, f"{module} has no __all__"
    if module == "labs":
        return  # the public API: its names resolve lazily (checked below)
    bound = {getattr(node, "name", None) for node in tree.body}
    for node in tree.body:
        for target in (node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]):
            bound.update(getattr(t, "id", None) for t in getattr(target, "elts", [target]))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    names = ast.literal_eval(declared[0].value)
    assert set(names) <= bound, f"{module}.__all__ names what it does not define: {sorted(set(names) - bound)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("labs.exercises")))
def test_public_functions_and_classes_have_docstrings(module):
    tree = _tree(MODULES[module])
    assert ast.get_docstring(tree), f"{module} has no module docstring"
    missing = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
               and not node.name.startswith("_") and not ast.get_docstring(node)]
    assert missing == [], f"{module}: public names without a docstring: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) in NO_TORCH))
def test_the_lower_rooms_import_no_torch(module):
    assert "torch" not in _imports(module), f"{module} imports torch: it belongs above labs.models"


def test_importing_the_lower_rooms_loads_no_torch_and_the_runtime_does():
    """In a fresh interpreter: the schedules, timelines, theory and pictures run without torch; the runtime needs it
    (the negative control: the same check sees torch when it is there)."""
    lower = sorted(m for m in MODULES if _room(m) in NO_TORCH)
    code = (f"import importlib, sys\nfor name in {lower!r}:\n    importlib.import_module(name)\n"
            "print('torch' in sys.modules)\nimport labs\nlabs.gpipe(2, 2)\nprint('torch' in sys.modules)\n"
            "import labs.runtime\nprint('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False", "True"], result.stdout


def test_the_public_names_resolve_to_their_homes():
    import labs
    for name in labs.__all__:
        value = getattr(labs, name)
        home = labs._HOMES[name]
        assert getattr(sys.modules[f"labs.{home}"], name) is value, name
    assert callable(labs.simulate) and callable(labs.launch)  # functions, not modules of the same name
    assert not os.path.exists(os.path.join(LABS, "simulate.py")) and not os.path.exists(os.path.join(LABS, "launch.py"))


def test_every_file_the_readme_table_names_exists_and_every_room_is_in_it():
    """The README's map of labs/: every path of its first column exists, every ``name.py`` its second column names
    in a folder's row is in that folder, and every room of the package has a row."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        rows = [line.split("|") for line in handle if line.startswith("| `labs")]
    named = {path for row in rows for path in re.findall(r"`(labs/[^`]*)`", row[1])}
    assert named, "the README's table of labs/ is missing"
    for row in rows:
        folders = re.findall(r"`(labs/[^`]*/)`", row[1])
        if len(folders) == 1:
            named |= {folders[0] + name for name in re.findall(r"`([a-z_]+\.py)`", row[2])}
    missing = sorted(path for path in named if not os.path.exists(os.path.join(ROOT, path)))
    assert missing == [], f"the README's table names files that do not exist: {missing}"
    rooms = {_room(m) for m in MODULES} - {""}
    listed = {path.split("/")[1].removesuffix(".py") for path in named}
    assert rooms <= listed, f"rooms missing from the README's table: {sorted(rooms - listed)}"
