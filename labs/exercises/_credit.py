"""Degenerate answers earn nothing: which graded cases are *trivial*, and the credit a set of judged cases earns.

A case is trivial when an answer that shows no understanding passes it: one of the canonical degenerate answers
(``DEGENERATE``: ``0, 0.0, 1, 1.0, None, [], {}, "", True, False``), an answer the exercise declares for that case
(``trivial(case)``: "another labs reference", "everything on one stage", "the naive sum"), or any case on which
every one of the exercise's plausible wrong answers (``wrong``: functions of the case) is right too (P = 1, M = 1 for
most formulas: a case no mistake shows on). An exercise declares both on its problem function:

    @exercise("traffic", trivial=lambda case: [[0, 0]], wrong={"forward only": lambda P, M, b: ...})
    def traffic_problem(case, got): ...

and ``score_cases`` (``_common``) then scores with ``credit``:

* trivial cases are judged and reported like the others, but earn nothing when right and cost one case when wrong:
  ``fraction = max(0, right non-trivial - wrong trivial) / non-trivial``. A function wrong on every case with a
  non-trivial answer scores 0 whatever it does on P = 1 (issue 14 part 3: notebook 02's ``return 0.0`` earned 0.14
  of the points on its P = 1 cases); a right function that mishandles P = 1 loses one case's worth per such case;
* an exercise whose cases are all trivial is a bug in its case generator: it scores 0 and says so.

The other half of the rule is generic and lives in ``labs.grading.protocol.score_outputs``: the same output for three
or more cases scores 0 unless it is right on every case, for every exercise (also the ones scored by hand).
"""
from __future__ import annotations

import json

__all__ = ["DEGENERATE", "TRIVIAL_NOTE", "credit", "greedy_cover", "is_trivial", "passes"]

DEGENERATE = (0, 0.0, 1, 1.0, None, [], {}, "", True, False)
TRIVIAL_NOTE = " (a trivial case: a degenerate answer passes it; it earns nothing, and costs a case when wrong)"


def passes(problem, case, value) -> bool:
    """Whether ``problem(case, value)`` finds nothing wrong (a value it cannot even judge is wrong)."""
    try:
        return problem(case, json.loads(json.dumps(value))) is None
    except Exception:  # noqa: BLE001 - a degenerate value of the wrong shape is simply wrong
        return False


def is_trivial(problem, case) -> bool:
    """True when a canonical degenerate answer, an answer ``problem.trivial(case)`` declares, or every one of the
    plausible wrong answers ``problem.wrong`` (name -> function of the case's arguments) is right on ``case``."""
    declared = getattr(problem, "trivial", None)
    try:
        extra = list(declared(case)) if declared else []
    except Exception:  # noqa: BLE001 - a declaration that cannot answer this case declares nothing for it
        extra = []
    if any(passes(problem, case, value) for value in list(DEGENERATE) + extra):
        return True
    wrong = getattr(problem, "wrong", None) or {}
    values = []
    for fn in wrong.values():
        try:
            values.append(fn(*case))
        except Exception:  # noqa: BLE001 - a mistake that crashes on this case is not right on it
            return False
    return bool(values) and all(passes(problem, case, value) for value in values)


def credit(judged: list, order=None) -> tuple[float, list, str]:
    """Credit for ``judged``: [(case, message or None, trivial)] -> (fraction, [(case, message)] problems, head).

    ``fraction = max(0, right non-trivial - wrong trivial) / non-trivial``; 0 with a reason when no case is
    non-trivial. ``head`` says how the fraction came about when trivial cases changed it (else "").
    """
    non_trivial = sum(not t for _, _, t in judged)
    right = sum(m is None and not t for _, m, t in judged)
    wrong_trivial = sum(m is not None and t for _, m, t in judged)
    problems = [(case, message + (TRIVIAL_NOTE if trivial else "")) for case, message, trivial in judged if message]
    if non_trivial == 0:
        return 0.0, problems, ("no case with a non-trivial answer was drawn (a bug in the exercise's cases): "
                               "nothing to earn")
    fraction = max(0, right - wrong_trivial) / non_trivial
    trivial_right = sum(m is None and t for _, m, t in judged)
    head = ""
    if fraction == 0 and not trivial_right:
        head = ""  # nothing earned, nothing to explain beyond the problems themselves
    elif trivial_right and fraction < 1:
        head = (f"{right} of {non_trivial} cases with a non-trivial answer right"
                + (f", {wrong_trivial} trivial cases wrong" if wrong_trivial else "")
                + f" ({trivial_right} trivial cases right earn nothing on their own); ")
    elif wrong_trivial:
        head = f"{wrong_trivial} trivial cases wrong, each costs one case; "
    return fraction, problems, head


def greedy_cover(bank: list, names, count: int, quota: int, exercise: str, priority) -> list:
    """Choose ``count`` hidden cases from ``bank`` ([(case, [names of the planted mistakes it exposes])]) so that each
    mistake in ``names`` is exposed by at least ``quota`` of them: repeatedly take the case ``priority(missed,
    misses)`` ranks highest (``misses``: how often each mistake is exposed so far). RuntimeError naming ``exercise``
    when the bank cannot expose every mistake often enough."""
    kept, misses = [], {n: 0 for n in names}
    while len(kept) < count and bank:
        bank.sort(key=lambda entry: priority(entry[1], misses), reverse=True)
        case, missed = bank.pop(0)
        kept.append(case)
        for n in missed:
            misses[n] += 1
    short = [n for n, k in misses.items() if k < quota]
    if short or len(kept) < count:
        raise RuntimeError(f"{exercise}: the draws expose these mistakes too rarely: {short} {misses}")
    return kept
