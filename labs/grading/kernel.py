"""The kernel side of grading: call the learner's function on the grader's cases and write plain outputs as JSON.

The grader (``labs.grading.grader``) never imports this module inside the learner's kernel: it reads this file's
*source* from its own copy of ``labs`` and sends it, with the exercise's cases, as one IPython ``user_expression``
(evaluated with plain ``eval``: no input or AST transformer of the learner's touches it). The source is executed in a
fresh namespace, so monkey-patching ``labs.grading.kernel`` in a cell changes nothing. What comes back is only what
the learner's function returned for each case, converted by ``plain``; expected values never enter the kernel.

The visible checks import ``plain`` and ``forbidden_calls`` from here (``labs.grading`` re-exports them), so a check
in the notebook and the grader agree on what "calling the reference" means.

Everything this file needs comes from the standard library (and ``importlib`` for an exercise's ``run`` adapter).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

__all__ = ["FORBIDDEN_MARK", "MAX_VALUES", "describe", "forbidden_calls", "forbidden_in", "not_implemented_in", "plain",
           "run_cases"]

FORBIDDEN_MARK = "labs-forbidden-call:"
_MAX_TEXT = 500
_MAX_DEPTH = 40
MAX_VALUES = 1_000_000  # values in one output: gradients of the graded models need ~10^4


def plain(value, limit: int = MAX_VALUES):
    """``value`` as JSON-able plain data: numbers, str, bool, None, lists, dicts with str keys.

    A tensor (or numpy array) becomes a nested list, an ``Action`` its string ``"2F5"``, a range or tuple a list, a
    set a sorted list; anything else ``{"object": "TypeName", "repr": "..."}`` (which no score accepts as an answer).
    More than ``limit`` values in all (or nesting deeper than 40) gives ``{"object": "too large", ...}``.
    """
    budget = [limit]
    try:
        return _plain(value, 0, budget)
    except OverflowError:
        return {"object": "too large", "repr": f"more than {limit} values or nested deeper than {_MAX_DEPTH}"}


def _plain(value, depth: int, budget: list):
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise OverflowError
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        budget[0] -= len(value) // 64  # a long string costs like the values it could hold
        if budget[0] < 0:
            raise OverflowError
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    kind = type(value)
    module = getattr(kind, "__module__", "")
    if module.startswith("torch") and hasattr(value, "detach"):
        if value.numel() > budget[0]:
            raise OverflowError
        budget[0] -= value.numel()
        return value.detach().cpu().tolist()
    if module.startswith("numpy") and hasattr(value, "tolist"):
        if getattr(value, "size", 1) > budget[0]:
            raise OverflowError
        return _plain(value.tolist(), depth + 1, budget)
    if kind.__name__ == "Action" and module.startswith("labs"):
        return str(value)
    if isinstance(value, (list, tuple, range)):
        if len(value) > budget[0]:
            raise OverflowError
        return [_plain(v, depth + 1, budget) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v, depth + 1, budget) for v in value), key=repr)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(_plain(k, depth + 1, budget)): _plain(v, depth + 1, budget)
                for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # scalars of other libraries
        try:
            item = value.item()
        except Exception:  # noqa: BLE001 - not a scalar after all
            item = value
        if item is not value and isinstance(item, (bool, int, float, str)):
            return _plain(item, depth + 1, budget)
    return {"object": kind.__name__, "repr": repr(value)[:_MAX_TEXT]}


# ---------------------------------------------------------------- forbidden references
def _resolve(dotted: str):
    """The function object named ``dotted`` (``labs.theory.idle_fraction``), unwrapped down to its code."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        while hasattr(target, "__wrapped__"):
            target = target.__wrapped__
        if isinstance(target, type):  # an autograd Function class: what its ``apply`` runs is its own ``forward``
            target = vars(target)["forward"]  # KeyError (skipped) when the class does not define one itself
        return getattr(target, "__func__", target)
    raise ImportError(f"cannot import {dotted}")


def _stub_code(name: str, freevars: tuple):
    """Code that records the call and raises, with as many free variables as the function it replaces has."""
    message = f"{FORBIDDEN_MARK} {name} (the reference this exercise asks you to write: not callable while grading)"
    lines = ["def _forbidden(*args, **kwargs):",
             f"    {'; '.join(freevars) or 'pass'}",
             f"    getattr(__import__('sys'), '_labs_forbidden_calls', []).append({name!r})",
             f"    raise PermissionError({message!r})"]
    if freevars:  # a closure: the stub must close over the same number of cells
        lines = ["def _outer():", f"    {' = '.join(freevars)} = None"] + ["    " + line for line in lines]
        lines.append("    return _forbidden")
    namespace: dict = {}
    exec(compile("\n".join(lines) + "\n", f"<forbidden {name}>", "exec"), namespace)  # noqa: S102 - fixed text
    return (namespace["_outer"]() if freevars else namespace["_forbidden"]).__code__


def _fingerprint(code) -> tuple:
    return (code.co_code, code.co_consts, code.co_names)


@contextlib.contextmanager
def forbidden_calls(names, watch_copies: bool = False):
    """While inside, calling any function in ``names`` (dotted) raises and is recorded; yields the record (a list).

    The function's ``__code__`` is swapped, so every alias (``f = labs.idle_fraction``), wrapper and forked rank
    sees the swap; the original code comes back on exit. A name may also be a class (a ``torch.autograd.Function``):
    the ``forward`` it defines is swapped, so ``Class.apply(...)`` fails the same way. With ``watch_copies`` a
    profile hook (this thread only, so not for code that runs on ranks) also records a call of any *copy* of a
    reference's code: a function rebuilt from a saved ``__code__``, a reloaded module, the reference's source pasted
    verbatim.
    """
    calls: list = []
    swapped = []
    previous = getattr(sys, "_labs_forbidden_calls", None)
    sys._labs_forbidden_calls = calls
    profile = sys.getprofile()
    try:
        for dotted in names:
            try:
                function = _resolve(dotted)
                code = function.__code__
            except (ImportError, AttributeError, KeyError):
                continue  # a reference that does not exist cannot be called either
            function.__code__ = _stub_code(dotted, code.co_freevars)
            swapped.append((function, code, dotted))
        if watch_copies and swapped:
            prints = {_fingerprint(code): dotted for _, code, dotted in swapped}

            def watch(frame, event, arg):
                if event == "call" and _fingerprint(frame.f_code) in prints:
                    calls.append(prints[_fingerprint(frame.f_code)])
            sys.setprofile(watch)
        yield calls
    finally:
        sys.setprofile(profile)
        for function, code, _ in swapped:
            function.__code__ = code
        sys._labs_forbidden_calls = previous


def forbidden_in(error: BaseException | str) -> str | None:
    """The forbidden reference named in an exception (also a rank's traceback inside ``RankFailed``), or None."""
    text = error if isinstance(error, str) else f"{error}\n{getattr(error, 'worker_traceback', '')}"
    if FORBIDDEN_MARK not in text:
        return None
    return text.split(FORBIDDEN_MARK, 1)[1].split()[0]


def not_implemented_in(error: BaseException) -> bool:
    """Whether ``error`` (or a rank's traceback inside it) is a NotImplementedError: an exercise not written yet."""
    return isinstance(error, NotImplementedError) or "NotImplementedError" in getattr(error, "worker_traceback", "")


def describe(error: BaseException) -> dict:
    """A case's exception as plain data: not implemented, a forbidden call, or the error's first lines."""
    if not_implemented_in(error):
        return {"not_implemented": True}
    name = forbidden_in(error)
    if name:
        return {"forbidden": name}
    text = str(error).strip()
    return {"error": f"{type(error).__name__}: {text}"[:_MAX_TEXT * 4] if text else type(error).__name__}


# ---------------------------------------------------------------- what the grader sends
def run_cases(namespace: dict, request) -> str:
    """Call ``namespace[request["name"]]`` on every case; write ``{"exercise", "token", "outputs"}`` to the path.

    ``request`` (a dict or its JSON text) carries ``name``, ``cases`` (lists of arguments), ``run`` ("module:function" or None),
    ``forbidden`` (dotted names), ``token`` and ``path`` (where to write). Returns a short status for the grader.
    """
    if isinstance(request, str):
        request = json.loads(request)
    name, cases, path = request["name"], request["cases"], request["path"]
    fn = namespace.get(name)
    texts: list = []  # each output as JSON text: what a case returns can never grow into a later one's
    if not callable(fn):
        texts = [json.dumps({"missing": True})] * len(cases)
    else:
        runner = None
        try:
            if request.get("run"):
                module, function = request["run"].split(":")
                runner = getattr(importlib.import_module(module), function)
        except BaseException as error:  # noqa: BLE001 - e.g. the learner deleted labs from the copy
            texts = [json.dumps(describe(error))] * len(cases)
        if not texts:
            forbidden = request.get("forbidden", ())
            with forbidden_calls(forbidden, watch_copies=runner is None) as calls:
                for index, case in enumerate(cases):
                    del calls[:]
                    try:
                        output = plain(runner(fn, *case) if runner else fn(*case))
                    except KeyboardInterrupt:  # the grader's time limit: the rest of the cases did not run
                        late = {"error": "interrupted: the grader's time limit ran out on this case"}
                        texts += [json.dumps(late)] * (len(cases) - index)
                        break
                    except BaseException as error:  # noqa: BLE001 - even SystemExit is just a failed case here
                        output = describe(error)
                    if calls:
                        output = {"forbidden": calls[0]}
                    texts.append(json.dumps(output))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # written with the references still guarded: code the notebook hooked into writing (open, json) cannot call
    # them to replace the outputs; a call seen here fails the whole request, and the grader then reads nothing
    with forbidden_calls(request.get("forbidden", ()), watch_copies=True) as calls:
        with open(path + ".part", "w") as handle:
            handle.write(f'{{"exercise": {json.dumps(name)}, "token": {json.dumps(request["token"])}, '
                         f'"outputs": [{", ".join(texts)}]}}')
        os.replace(path + ".part", path)
    if calls:
        raise PermissionError(f"{FORBIDDEN_MARK} {calls[0]} was called while the outputs were written")
    return f"{name}: {len(texts)} outputs written"
