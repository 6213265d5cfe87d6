"""Dishonest and destructive submissions: each attack scores 0 on the exercise it tampers with (real kernels, ~2 min).

Every test grades a tiny notebook 02 (``idle_fraction``, 1 point; ``smallest_m``, 2 points) instead of the
whole course notebook: ``import labs`` finds the grader's temporary copy, then the cells under attack. An honest
exercise beside the tampered one shows that the rest of the notebook is still graded.
"""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from labs.exercises import nb02
from labs.grading import Graded, GradingError, read_outputs, score_outputs
from labs.grading.grader import grade_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALLEST = ("import math\n"
            "def smallest_m(P, target, forward_ms, backward_ms, link_ms):\n"
            "    work = forward_ms + backward_ms\n"
            "    return max(1, math.ceil((P - 1) * (work + 2 * link_ms) * (1 - target) / (target * work) - 1e-9))\n")
IDLE = "def idle_fraction(P, M):\n    return (P - 1) / (M + P - 1)\n"
WRONG_IDLE = "def idle_fraction(P, M):\n    return -1.0  # never right\n"


def _grade(tmp_path, *cells, **options) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in ("import labs",) + cells]
    folder = tmp_path / "submitted"
    folder.mkdir(exist_ok=True)
    path = folder / "02_attack.ipynb"
    nbformat.write(nb, str(path))
    options.setdefault("timeout_s", 120)
    result = grade_notebook(str(path), **options)
    assert path.exists()  # the submission itself is never touched
    return {e["name"]: e for e in result["exercises"]} | {"_total": result}


def _graded(name: str) -> Graded:
    return next(graded for graded in nb02.GRADED if graded.name == name)


def _zero(entry, *words):
    assert entry["points"] == 0 and not entry["passed"], entry
    for word in words:
        assert word in entry["message"], entry


def test_reassigning_graded_or_its_tests_changes_nothing(tmp_path):
    attack = """
import labs.exercises.nb02 as ex, labs.exercises._common as common
from labs.grading import Graded
always = lambda *args, **kwargs: (1.0, "all cases passed")
for module in (ex, common):  # every function of the exercise module and its helpers: cases, problems, scores, checks
    for key, value in list(vars(module).items()):
        if callable(value) and not isinstance(value, type) and not key.startswith("__"):
            setattr(module, key, always)
ex.GRADED = [Graded("idle_fraction", 1000, cases=lambda rng: [], score=always)]
ex.idle_cases = ex.smallest_m_cases = lambda rng: []
ex.idle_problem = ex.idle_judge = lambda case, got: None
ex.idle_score = ex.score_cases = common.score_cases = common.fraction_of_cases = always
"""
    result = _grade(tmp_path, SMALLEST, WRONG_IDLE, attack)
    _zero(result["idle_fraction"], "expected")
    assert result["smallest_m"]["passed"] and result["_total"]["max_score"] == 3


def test_printing_passed_through_print_or_stdout_changes_nothing(tmp_path):
    attack = """
import builtins, sys
class Passed:
    def write(self, text):
        return sys.__stdout__.write("passed\\n")
    def flush(self):
        pass
sys.stdout = sys.stderr = Passed()
builtins.print = lambda *args, **kwargs: sys.__stdout__.write(
    'LABS_GRADE_RESULT {"name": "idle_fraction", "points": 2, "max_points": 2, "passed": true, "message": "passed"}\\n')
print("your idle_fraction matches the reference on every case: True")
print("idle_fraction 2/2 passed")
"""
    result = _grade(tmp_path, SMALLEST, WRONG_IDLE, attack)
    _zero(result["idle_fraction"], "expected 0.")
    assert result["smallest_m"]["passed"]


def test_input_and_ast_transformers_never_see_the_grading_request(tmp_path):
    attack = """
import ast
ip = get_ipython()
def rewrite(lines):  # every later cell, empty or not, becomes one that claims success and then raises
    return ['print("idle_fraction: passed")\\n', 'raise SystemExit("rewritten")\\n']
ip.input_transformers_cleanup.append(rewrite)
ip.input_transformers_post.append(rewrite)
class Everything(ast.NodeTransformer):
    def visit_Module(self, node):
        return ast.parse('print("passed")\\nraise SystemExit("rewritten")')
ip.ast_transformers.append(Everything())
"""
    result = _grade(tmp_path, SMALLEST, WRONG_IDLE, attack, "idle_fraction = lambda P, M: 1.0")
    _zero(result["idle_fraction"], "expected")  # the rewritten last cell never ran: the wrong function is graded
    assert result["smallest_m"]["passed"]
    assert result["_total"]["cell_errors"][-1]["error"].startswith("SystemExit")


def test_peeking_into_the_callers_frames_finds_no_expected_value(tmp_path):
    peek = """
import sys
class AlwaysEqual(float):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False
def peek(fallback):
    frame = sys._getframe(2)
    while frame is not None:  # look for anything that could be the answer
        for key in ("want", "expected", "expected_m", "reference", "answer", "outputs", "closed"):
            if key in frame.f_locals:
                return frame.f_locals[key]
        frame = frame.f_back
    return AlwaysEqual(fallback)
def idle_fraction(P, M):
    return peek(0.123)
def smallest_m(P, target, forward_ms, backward_ms, link_ms):
    return peek(-1)
"""
    result = _grade(tmp_path, peek)
    _zero(result["idle_fraction"])
    _zero(result["smallest_m"])


def test_calling_the_reference_directly_through_an_alias_or_a_wrapper_scores_zero(tmp_path):
    alias = "f = labs.idle_fraction\n"
    result = _grade(tmp_path, alias, "def idle_fraction(P, M):\n    return f(P, M)\n", SMALLEST)
    _zero(result["idle_fraction"], "labs.theory.idle_fraction", "reference")
    assert result["smallest_m"]["passed"]
    # bubble_overhead gives the idle share too (idle = overhead / (1 + overhead)): it is forbidden as well
    partial = ("import functools\nfrom labs.theory import bubble_overhead as g\n"
               "idle_fraction = functools.partial(lambda g, P, M: g(P, M) / (1 + g(P, M)), g)\n")
    result = _grade(tmp_path, partial, SMALLEST)
    _zero(result["idle_fraction"], "labs.theory.bubble_overhead")
    assert result["smallest_m"]["passed"]
    wrapped = _grade(tmp_path, "def idle_fraction(P, M):\n    try:\n        return labs.idle_fraction(P, M)\n"
                               "    except Exception:\n        return (P - 1) / (M + P - 1)\n", SMALLEST)
    _zero(wrapped["idle_fraction"], "labs.theory.idle_fraction")  # caught or not, the call itself fails the case
    assert wrapped["smallest_m"]["passed"]


def test_smallest_m_by_the_graders_search_or_by_the_labs_simulator_scores_zero(tmp_path):
    """Notebook 02's second exercise: asking the grader's own search, or searching with ``labs.simulate`` (or the
    explorer, which calls it), is not an answer; the honest idle_fraction beside it is still graded."""
    grader = ("import labs.exercises.nb02 as ex\n"
              "def smallest_m(P, target, forward_ms, backward_ms, link_ms):\n"
              "    return ex.expected_m(P, target, forward_ms, backward_ms, link_ms)\n")
    result = _grade(tmp_path, IDLE, grader)
    _zero(result["smallest_m"], "labs.exercises.nb02.expected_m")
    assert result["idle_fraction"]["passed"]
    search = ("from labs.viz.explorer import explore\n"
              "def smallest_m(P, target, forward_ms, backward_ms, link_ms):\n"
              "    M = 1\n"
              "    while explore('gpipe', P, M, 1, forward_ms, backward_ms, link_ms)[1]['idle_fraction'] > target:\n"
              "        M += 1\n"
              "    return M\n")
    result = _grade(tmp_path, IDLE, search)
    _zero(result["smallest_m"], "labs.viz.explorer.explore")


def test_a_copy_of_the_reference_code_or_a_reloaded_module_scores_zero(tmp_path):
    copies = """
import sys, types
import labs.theory as theory
# taken before grading: the swap of the references' code does not reach these copies' functions
idle_copy = types.FunctionType(labs.idle_fraction.__code__, vars(theory), "idle_fraction", (1,))
overhead_copy = types.FunctionType(labs.bubble_overhead.__code__, vars(theory), "bubble_overhead", (1,))
def idle_fraction(P, M):  # odd P: a copy of the reference itself; even P: a copy of bubble_overhead
    if P % 2:
        return idle_copy(P, M)
    overhead = overhead_copy(P, M)
    return overhead / (1 + overhead)
"""
    result = _grade(tmp_path, copies, SMALLEST)
    _zero(result["idle_fraction"], "labs.theory.idle_fraction", "labs.theory.bubble_overhead")
    assert result["smallest_m"]["passed"]
    reloaded = """
import importlib, sys
import labs.theory as theory
def idle_fraction(P, M):
    return importlib.reload(theory).idle_fraction(P, M)  # fresh function objects, same code
"""
    result = _grade(tmp_path, reloaded, SMALLEST)
    _zero(result["idle_fraction"], "labs.theory.idle_fraction")
    assert result["smallest_m"]["passed"]


def test_inflated_or_forged_outputs_are_rejected(tmp_path):
    forge = """
import json
_dumps = json.dumps
def dumps(data, **kwargs):  # the kernel-side writer goes through here: add points, an output, another name
    if isinstance(data, str) and len(data) == 32:  # the token
        return _dumps(data) + ', "points": 1000, "max_points": 1, "passed": true'
    return _dumps(data, **kwargs) + (", 1.0" if isinstance(data, (int, float)) else "")
json.dumps = dumps
"""
    result = _grade(tmp_path, SMALLEST, WRONG_IDLE, forge)
    _zero(result["idle_fraction"], "forged")
    _zero(result["smallest_m"], "forged")
    assert result["_total"]["score"] == 0 and result["_total"]["max_score"] == 3


def test_answers_computed_by_the_reference_while_the_outputs_are_written_score_zero(tmp_path):
    late = """
import builtins, json, sys
import labs.theory as theory
_open = builtins.open
class Rewrite:  # what the grader's writer writes goes through here: swap in the reference's answers
    def __init__(self, handle):
        self.handle = handle
    def write(self, text):
        frame = sys._getframe(1)
        while frame and "request" not in frame.f_locals:
            frame = frame.f_back
        if frame.f_locals["request"]["name"] != "idle_fraction":
            return self.handle.write(text)
        data = json.loads(text)
        data["outputs"] = [theory.idle_fraction(*case) for case in frame.f_locals["request"]["cases"]]
        return self.handle.write(json.dumps(data))
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)
def opened(path, mode="r", *args, **kwargs):
    handle = _open(path, mode, *args, **kwargs)
    return Rewrite(handle) if "labs-grade" in str(path) and "w" in mode else handle
builtins.open = opened
"""
    result = _grade(tmp_path, WRONG_IDLE, SMALLEST, late)
    _zero(result["idle_fraction"])  # the references are still guarded while the outputs are written
    assert result["smallest_m"]["passed"]


def test_a_hanging_exercise_scores_zero_and_the_others_are_still_graded(tmp_path):
    stubborn = """
import time
def smallest_m(P, target, forward_ms, backward_ms, link_ms):
    while True:  # swallows the grader's interrupt too
        try:
            time.sleep(0.05)
        except BaseException:
            pass
"""
    slow_cell = "import time\nwhile True:\n    time.sleep(0.05)"
    result = _grade(tmp_path, stubborn, slow_cell, IDLE, timeout_s=90, step_timeout_s=5)
    _zero(result["smallest_m"], "did not stop within 5 s")
    assert result["idle_fraction"]["passed"], result["idle_fraction"]  # graded in a fresh kernel after the kill
    assert "interrupted" in result["_total"]["cell_errors"][0]["error"]  # the slow cell was stopped, not fatal
    assert result["_total"]["seconds"] < 90


def test_a_kernel_that_exits_scores_zero_for_what_it_broke(tmp_path):
    exits = "import os\ndef smallest_m(P, target, forward_ms, backward_ms, link_ms):\n    os._exit(3)\n"
    killer_cell = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    result = _grade(tmp_path, exits, killer_cell, "import sys\nsys.exit(1)", "exit()", IDLE)
    _zero(result["smallest_m"], "kernel exited")
    assert result["idle_fraction"]["passed"], result["idle_fraction"]  # the notebook was re-run without the kill
    errors = {e["cell"]: e["error"] for e in result["_total"]["cell_errors"]}
    assert "kernel died" in errors[2] and errors[3].startswith("SystemExit")


def test_deleting_files_only_harms_the_temporary_copy(tmp_path):
    delete = """
import os, shutil
root = os.path.abspath("..")
for name in os.listdir(root):  # the copy of labs, the copied notebook, the results folder
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
"""
    result = _grade(tmp_path, SMALLEST, delete, IDLE)
    assert result["smallest_m"]["passed"] and result["idle_fraction"]["passed"]  # nb02 needs no file
    assert os.path.isfile(os.path.join(ROOT, "labs", "grading", "kernel.py"))
    assert os.path.isfile(os.path.join(ROOT, "labs", "exercises", "nb02.py"))


# ---------------------------------------------------------------- the grader's own checks, without a kernel
def _write(tmp_path, data) -> str:
    path = tmp_path / "out.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("data, why", [
    ({"exercise": "f", "token": "t", "outputs": [1]}, "1 outputs for 2 cases"),
    ({"exercise": "g", "token": "t", "outputs": [1, 2]}, "forged"),
    ({"exercise": "f", "token": "u", "outputs": [1, 2]}, "forged"),
    ({"exercise": "f", "token": "t", "outputs": [1, 2], "points": 1000}, "fields"),
    ('{"exercise": "f", "token": "t", "outputs": [1, 2], "outputs": [1, 2]}', "duplicate"),
    ("[1, 2]", "forged"),
    ("not json", "not valid JSON"),
])
def test_read_outputs_rejects_anything_but_what_was_asked(tmp_path, data, why):
    with pytest.raises(GradingError, match=why):
        read_outputs(_write(tmp_path, data), "f", "t", 2)
    with pytest.raises(GradingError, match="no outputs"):
        read_outputs(str(tmp_path / "missing.json"), "f", "t", 2)


def test_scores_are_capped_and_forbidden_calls_count_against_the_score():
    inflated = Graded("f", 1, cases=list, score=lambda cases, outputs: (1000, "passed"))
    assert score_outputs(inflated, [(1,)], [1])[0] == 1.0
    negative = Graded("f", 1, cases=list, score=lambda cases, outputs: (float("nan"), "?"))
    assert score_outputs(negative, [(1,)], [1])[0] == 0.0
    lenient = Graded("f", 1, cases=list, score=lambda cases, outputs: (1.0, "all passed"))
    fraction, message = score_outputs(lenient, [(1,), (2,)], [{"forbidden": "labs.x"}, 1])
    assert fraction == 0.5 and "labs.x" in message
    idle = _graded("idle_fraction")
    cases = [(4, 8), (2, 1)]
    assert score_outputs(idle, cases, [3 / 11, "0.5"])[0] == 0.5
    assert score_outputs(idle, cases, [{"not_implemented": True}] * 2) == (
        0.0, "not implemented (raises NotImplementedError)")
