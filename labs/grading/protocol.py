"""What a graded exercise declares, and how the grader reads and scores what the learner's kernel sends back.

An exercise module ``labs/exercises/nbNN.py`` (``NN``: the notebook file's 2-digit prefix) declares what is graded:

    GRADED = [Graded(name="idle_fraction", points=2, cases=_cases, score=_score,
                     forbidden=("labs.theory.idle_fraction",))]

``read_outputs`` accepts the kernel's JSON answer only if it is exactly what was asked (fields, exercise, token,
number of outputs); ``score_outputs`` scores it with ``Graded.score`` in the grader's process, capped. Stdlib only.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Callable

from ..errors import InputError, LabsError

__all__ = ["Graded", "GradingError", "constant_output", "module_for", "read_outputs", "score_outputs"]

_MAX_OUTPUT_BYTES = 64 * 1024 * 1024


@dataclass
class Graded:
    """One graded exercise: the learner's function ``name``, its points, how the grader draws its cases and scores
    the outputs, an optional kernel-side ``run`` adapter, the ``forbidden`` references, and whether its score
    depends on a measured time (``timing``: ``python -m labs grade --gradebook`` then grades its notebooks alone)."""

    name: str  # the learner's function's name in the notebook
    points: float
    cases: Callable  # cases(rng: random.Random) -> list[tuple] of plain data, drawn by the grader at grading time
    score: Callable  # score(cases, outputs) -> (fraction in [0, 1], message), in the grader's process
    run: str | None = None  # kernel side "module:function", called as f(fn, *case) -> output; default fn(*case)
    forbidden: tuple = ()  # dotted names of the labs references the exercise asks for: calling one fails the case
    timing: bool = False  # its score uses a measured time: a class is graded with nothing else running beside it


class GradingError(LabsError, ValueError):
    """The kernel's answer file is missing or is not what the grader asked for."""


def module_for(path: str) -> str:
    """``labs.exercises.nbNN`` for a notebook file named ``NN_something.ipynb``; InputError for another name."""
    match = re.match(r"(\d{2})_", os.path.basename(path))
    if not match:
        raise InputError(f"cannot tell which exercises {path!r} holds: a course notebook's file name starts with "
                         f"its two-digit number, e.g. 01_naive_pipeline.ipynb")
    return f"labs.exercises.nb{match.group(1)}"


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise GradingError(f"duplicate fields {sorted(k for k in set(keys) if keys.count(k) > 1)} in the outputs")
    return dict(pairs)


def read_outputs(path: str, name: str, token: str, count: int) -> list:
    """The outputs the kernel wrote for exercise ``name``; GradingError unless the file is exactly what was asked."""
    if not os.path.isfile(path):
        raise GradingError("the kernel wrote no outputs")
    if os.path.getsize(path) > _MAX_OUTPUT_BYTES:
        raise GradingError(f"the outputs are larger than {_MAX_OUTPUT_BYTES >> 20} MiB")
    with open(path) as handle:
        try:
            data = json.load(handle, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as error:
            raise GradingError(f"the outputs are not valid JSON ({error})") from None
    if not isinstance(data, dict) or sorted(data) != ["exercise", "outputs", "token"]:
        raise GradingError(f"forged outputs: fields {sorted(data) if isinstance(data, dict) else type(data)}, "
                           f"expected exercise, outputs, token")
    if data["exercise"] != name or data["token"] != token:
        raise GradingError(f"forged outputs: they are for {str(data['exercise'])[:80]!r} with another token, "
                           f"not for this request for {name}")
    if not isinstance(data["outputs"], list) or len(data["outputs"]) != count:
        got = len(data["outputs"]) if isinstance(data["outputs"], list) else type(data["outputs"]).__name__
        raise GradingError(f"forged outputs: {got} outputs for {count} cases")
    return data["outputs"]


def constant_output(outputs: list) -> bool:
    """Three or more outputs, all the same as JSON (``0`` and ``0.0`` count as the same answer)."""
    if len(outputs) < 3:
        return False
    texts = {json.dumps(o, sort_keys=True) for o in outputs}
    numbers = all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in outputs)
    return len(texts) == 1 or (numbers and len({float(o) for o in outputs}) == 1)


def score_outputs(graded: Graded, cases: list, outputs: list) -> tuple[float, str]:
    """(fraction in [0, 1], message): ``graded.score`` in this process, capped, never above the share of cases that
    did not call a forbidden reference, and 0 for the same output on every case unless that scored full marks
    (``constant_output``: a stub that returns 0.0 is right where the answer is 0, e.g. at P=1)."""
    def all_are(key):
        return all(isinstance(o, dict) and o.get(key) is True and len(o) == 1 for o in outputs)
    if outputs and all_are("missing"):
        return 0.0, (f"no function named {graded.name} in the notebook (its cell was not run, raised, or the "
                     f"function was renamed)")
    if outputs and all_are("not_implemented"):
        return 0.0, "not implemented (raises NotImplementedError)"
    try:
        fraction, message = graded.score(cases, outputs)
        fraction = float(fraction)
    except Exception as error:  # noqa: BLE001 - outputs of any shape must not crash the grader
        return 0.0, f"could not score the outputs: {type(error).__name__}: {error}"
    fraction = min(1.0, max(0.0, fraction)) if math.isfinite(fraction) else 0.0
    if 0.0 < fraction < 1.0 and constant_output(outputs):
        # a constant is right wherever the answer happens to be that value (P=1: nothing idles): it earns nothing
        text = json.dumps(outputs[0], sort_keys=True)
        return 0.0, (f"the same answer, {text[:80]}, for all {len(outputs)} cases: a constant earns nothing "
                     f"unless it is right on every case; {message}")
    forbidden = [o["forbidden"] for o in outputs if isinstance(o, dict) and "forbidden" in o]
    if forbidden:
        fraction = min(fraction, 1.0 - len(forbidden) / len(outputs))
        note = f"{len(forbidden)} of {len(outputs)} cases call {forbidden[0]}, the reference this exercise asks for"
        message = message if forbidden[0] in str(message) else f"{note}; {message}"
    return fraction, str(message)
