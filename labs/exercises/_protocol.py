"""Graded entries in the grading protocol of COMMON.md (cases and score on the grader's side), on any grading.py.

    GRADED = [graded("zb_h1_schedule", 3, cases=_cases, score=_score, forbidden=("labs.zero_bubble.zb_h1",))]

``cases(rng)`` draws the inputs at grading time; the learner's function only computes outputs, turned into plain data
(``plain``); ``score(cases, outputs)`` recomputes every expected value and returns (fraction, message). When
``labs.grading.Graded`` already has ``cases``/``score`` fields, ``graded`` builds one of those. Otherwise (an older
grading.py whose ``Graded`` takes ``test(fn)``) it wraps the same cases and score into such a test, so the exercise
grades the same way either way. This module goes once every grading.py speaks the protocol.
"""
from __future__ import annotations

import dataclasses
import importlib
import random
from contextlib import contextmanager

from labs.grading import Graded


def plain(value):
    """JSON-able plain data: numbers, str, bool, None, lists, str-keyed dicts; an Action as "2F5"; a tensor a list."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


class _Forbidden(Exception):
    pass


@contextmanager
def _forbid(names):
    """Make each dotted name raise while the learner's function runs (so calling the reference scores nothing)."""
    saved = []
    for dotted in names:
        module_name, attribute = dotted.rsplit(".", 1)
        module = importlib.import_module(module_name)

        def refuse(*args, _name=dotted, **kwargs):
            raise _Forbidden(_name)
        saved.append((module, attribute, getattr(module, attribute)))
        setattr(module, attribute, refuse)
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


def call(fn, case, forbidden=(), run: str | None = None):
    """The plain output of ``fn(*case)`` (or of ``run``'s ``f(fn, *case)``), or what went wrong, as plain data."""
    if run:
        module_name, function = run.split(":")
        runner = getattr(importlib.import_module(module_name), function)
    try:
        with _forbid(forbidden):
            return plain(runner(fn, *case) if run else fn(*case))
    except _Forbidden as error:
        return {"forbidden": str(error)}
    except NotImplementedError:
        return {"not_implemented": True}
    except Exception as error:  # noqa: BLE001 - a submission may raise anything
        return {"error": f"{type(error).__name__}: {error}"}


def graded(name: str, points: float, cases, score, run: str | None = None, forbidden: tuple = ()):
    fields = {f.name for f in dataclasses.fields(Graded)}
    if {"cases", "score"} <= fields:
        return Graded(name=name, points=points, cases=cases, score=score, run=run, forbidden=forbidden)

    def test(fn):
        drawn = cases(random.Random())
        outputs = [call(fn, case, forbidden, run) for case in drawn]
        if any(isinstance(o, dict) and o.get("not_implemented") for o in outputs):
            raise NotImplementedError(name)
        fraction, message = score(drawn, outputs)
        assert fraction >= 1.0, f"{fraction:.0%} of the marks: {message}"
    return Graded(name=name, points=points, test=test)
