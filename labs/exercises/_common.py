"""What every exercise check and graded score shares: judging one case, ordering failures, reporting them.

An exercise module writes one *problem* function per exercise, ``problem(case, value) -> None | str``: None when
``value`` (the learner's output for ``case``, as ``labs.grading.plain`` data) is right, else a sentence saying which
call, what came back and what was expected. Both sides use it:

* the visible check in the notebook (kernel side): ``check(fn, cases, problem, name=..., reference=...)`` calls the
  learner's function, says "not implemented yet" or "just calls the reference" and carries on with the reference,
  and prints the most instructive failing case first, each distinct message once;
* the graded score (grader side): ``score_cases(cases, outputs, problem)`` -> (fraction, message), or
  ``fraction_of_cases(problems, n)`` for scores built by hand.

Degenerate answers earn nothing (``_credit.py``): ``score_cases`` gives no credit for *trivial* cases (ones a
degenerate answer passes: 0, 1, None, [], ..., the answers ``exercise(trivial=...)`` declares, or a case on which all
of ``exercise(wrong=...)``'s plausible mistakes are right), and a wrong trivial case costs one case.
"""
from __future__ import annotations

import re

from labs.exercises._credit import credit, is_trivial
from labs.grading.kernel import describe, forbidden_calls, plain

__all__ = ["Answer", "SHOWN", "call_text", "check", "collect", "distinct", "exercise", "forbidden_message",
           "fraction_of_cases", "gradient_tensors", "instructiveness", "not_implemented_message",
           "one_stage_per_rank", "real_run", "report", "score_cases", "sort_case", "special"]

SHOWN = 3  # distinct failure messages a check or a score shows
_CALL = re.compile(r"^[A-Za-z_][\w.]*\([^()]*\)")  # the call a message starts with: f(2, 3)


def special(where: str, output) -> str | None:
    """The problem when ``output`` is not a value but what the kernel made of a failed call; None for a value."""
    if not isinstance(output, dict) or len(output) > 2:
        return None
    if output.get("not_implemented") is True and len(output) == 1:
        return f"{where}: not implemented (raises NotImplementedError)"
    if isinstance(output.get("forbidden"), str) and len(output) == 1:
        return (f"{where} calls {output['forbidden']}, the reference this exercise asks you to write; "
                f"write your own")
    if isinstance(output.get("error"), str) and len(output) == 1:
        return f"{where} raised {output['error']}"
    if output.get("missing") is True and len(output) == 1:
        return f"{where}: no such function in the notebook"
    if isinstance(output.get("object"), str) and "repr" in output:
        return f"{where} returned {output['repr']}, a {output['object']} (expected plain values)"
    return None


def instructiveness(case) -> tuple:
    """Sort key: failing cases with every size above 1 first (P=1 or M=1 hides most mistakes), then smaller ones."""
    numbers = [x for x in case if isinstance(x, (int, float)) and not isinstance(x, bool)] if isinstance(
        case, (tuple, list)) else []
    degenerate = any(x <= 1 for x in numbers)
    return (degenerate, sum(abs(x) for x in numbers))


def distinct(messages: list[str]) -> list[str]:
    """Each message once, in first-seen order, with "(the same for N cases)" when it repeats. Messages that differ
    only in the call they start with (``f(2, 3) raised ...``, ``f(4, 1) raised ...``) count as the same."""
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for message in messages:
        key = _CALL.sub("", message, count=1)
        first.setdefault(key, message)
        counts[key] = counts.get(key, 0) + 1
    return [first[k] if n == 1 else f"{first[k]} (the same for {n} cases)" for k, n in counts.items()]


def fraction_of_cases(problems: list, n: int, what: str = "cases") -> tuple[float, str]:
    """(share of the n cases without a problem, message): the most instructive problem first, repeats shown once.

    ``problems`` holds messages, or (case, message) pairs, which are ordered by ``instructiveness``. (Every case
    earns here: for scores of answers that a degenerate answer can pass, use ``score_cases`` or ``_credit.credit``.)
    """
    if n <= 0:
        return 0.0, "no cases to grade"
    return max(0.0, (n - len(problems)) / n), _problems_text(problems, n, what)


def _problems_text(problems: list, n: int, what: str) -> str:
    pairs = [p if isinstance(p, tuple) and len(p) == 2 else (None, p) for p in problems]
    pairs.sort(key=lambda p: instructiveness(p[0]) if p[0] is not None else (True, 0))
    if not pairs:
        return f"all {n} {what} passed"
    shown = distinct([message for _, message in pairs])
    more = f"; and {len(shown) - SHOWN} other problems" if len(shown) > SHOWN else ""
    return f"{len(pairs)} of {n} {what} wrong; " + "\n".join(shown[:SHOWN]) + more


def score_cases(cases: list, outputs: list, problem) -> tuple[float, str]:
    """A score: ``problem(case, output)`` on every case (after the kernel's failures), under the degenerate-answer
    rule (``_credit``): trivial cases earn nothing when right and cost a case when wrong. Returns (fraction, message)."""
    judged = []
    for case, output in zip(cases, outputs):
        where = call_text(problem, case)
        message = special(where, output)
        if message is None:
            try:
                message = problem(case, output)
            except Exception as error:  # noqa: BLE001 - outputs of an unexpected shape are wrong answers
                message = f"{where} returned {str(output)[:200]}: {type(error).__name__}: {error}"
        judged.append((sort_case(problem, case), message or None, is_trivial(problem, case)))
    fraction, problems, head = credit(judged)
    return fraction, head + _problems_text(problems, len(cases), "cases")


def call_text(problem, case) -> str:
    """``name(1, 2)`` for a case, with the exercise's name from ``problem.exercise`` when it has one (or the
    problem's own ``where(case)``, for cases too large to print)."""
    if getattr(problem, "where", None):
        return problem.where(case)
    name = getattr(problem, "exercise", "the function")
    return f"{name}({', '.join(map(repr, case))})"


def sort_case(problem, case) -> tuple:
    """What ``instructiveness`` orders a failing case by: ``problem.key(case)`` (its sizes) if given, else the case."""
    return tuple(problem.key(case)) if getattr(problem, "key", None) else tuple(case)


def exercise(name: str, where=None, key=None, trivial=None, wrong=None):
    """Decorator for a problem function: remembers the exercise's name for messages, and optionally ``where(case)``
    (how a message names the call), ``key(case)`` (the sizes that order failing cases, e.g. (P, M)), and for the
    degenerate-answer rule (``_credit``) ``trivial(case)`` (answers that show no understanding on this case, e.g.
    another labs reference's output) and ``wrong`` ({name: function of the case's arguments}: the plausible
    mistakes; a case on which all of them are right is trivial)."""
    def mark(problem):
        problem.exercise = name
        if where:
            problem.where = where
        if key:
            problem.key = key
        if trivial:
            problem.trivial = trivial
        if wrong:
            problem.wrong = dict(wrong)
        return problem
    return mark


def one_stage_per_rank(where: str, schedule, P: int, M: int):
    """``schedule`` (plain strings or Actions) validated for P ranks and M micro-batches, rank r holding stage r.

    Returns (the action lists, None), or (None, why not) when the validator rejects it or a rank runs another stage.
    """
    from labs.schedules import ScheduleError, parse, validate
    try:
        actions = validate(parse(schedule), M=M, num_stages=P, P=P)
    except ScheduleError as error:
        return None, f"{where}: the validator rejects it: {error}"
    for r, acts in enumerate(actions):
        wrong = [a for a in acts if a.stage != r]
        if wrong:
            return None, f"{where}: rank {r} runs {wrong[0]}, but rank r holds stage r"
    return actions, None


def gradient_tensors(where: str, got: dict, want: dict):
    """The learner's gradients (plain lists, by parameter name) as tensors shaped like ``want``'s.

    Returns ({name: tensor}, None), or (None, the problem) for the first one that is not a tensor of numbers or has
    the wrong shape; ``where`` starts the message. Every name in ``want`` must be in ``got`` (check that first).
    """
    import torch  # here, not above: the grading kernel's helpers stay light
    tensors = {}
    for name, reference in want.items():
        try:
            tensors[name] = torch.tensor(got[name], dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            return None, f"{where}: the gradient of {name} is not a tensor of numbers: {str(got[name])[:100]}"
        if tensors[name].shape != reference.shape:
            return None, (f"{where}: the gradient of {name} has shape {tuple(tensors[name].shape)}, expected "
                          f"{tuple(reference.shape)}")
    return tensors, None


def real_run(where: str, schedule, P: int, M: int, pace_ms: tuple, tolerance: float):
    """One real training step of ``schedule`` on P processes (P layers, batch 4M) against one process.

    Returns (run, None), or (None, what went wrong) when it fails or its gradients differ by more than ``tolerance``;
    ``where`` starts the message. Grader side (notebook 04's and 11's scores) and the visible checks.
    """
    from labs.runtime.launcher import LaunchTimeout, RankFailed  # here, not above: most exercises never start processes
    from labs.pipeline import run_pipeline
    from labs.schedules import ScheduleError, parse
    try:
        run = run_pipeline(parse(schedule), P=P, M=M, layers=P, batch_size=4 * M, pace_ms=pace_ms,
                           warmup_steps=0, steps=1, timeout_s=30)
    except (RankFailed, LaunchTimeout, ScheduleError) as error:
        return None, f"{where} failed: {error.brief() if isinstance(error, RankFailed) else str(error).strip()}"
    if run.max_grad_error > tolerance:
        return None, f"{where}: gradients differ from one process by {run.max_grad_error:.1e}"
    return run, None


# ---------------------------------------------------------------- visible checks (in the notebook's kernel)
def not_implemented_message(name: str, reference: str) -> str:
    return f"not implemented yet: {name} (carrying on with the labs reference, {reference})"


def forbidden_message(name: str, called: str) -> str:
    return (f"{name} just calls {called}, the reference it is asked to write: write your own "
            f"(carrying on with the labs reference)")


def check(fn, cases: list, problem, name: str, reference: str, forbidden: tuple = (), passed: str = "",
          call=None) -> bool:
    """The visible check: run ``fn`` on ``cases`` (``call(fn, *case)`` if given), print feedback, True if all right.

    Never raises. Says "not implemented yet" or "just calls the reference" (for any name in ``forbidden``) and
    returns False so the notebook carries on with the reference; otherwise prints the most instructive failing case
    first and each distinct message once.
    """
    values = []
    with forbidden_calls(forbidden, watch_copies=call is None) as calls:  # only the learner's calls run guarded
        for case in cases:
            del calls[:]
            try:
                value = plain(call(fn, *case) if call else fn(*case))
            except BaseException as error:  # noqa: BLE001 - a check never raises, not even on SystemExit
                if isinstance(error, KeyboardInterrupt):
                    raise
                value = describe(error)
            if calls:
                value = {"forbidden": calls[0]}
            if value == {"not_implemented": True}:
                print(not_implemented_message(name, reference))
                return False
            if isinstance(value, dict) and "forbidden" in value and len(value) == 1:
                print(forbidden_message(name, value["forbidden"]))
                return False
            values.append(value)
    problems = []
    for case, value in zip(cases, values):  # judged with the references back in place
        where = call_text(problem, case)
        message = special(where, value)
        if message is None:
            try:
                message = problem(case, value)
            except Exception as error:  # noqa: BLE001
                message = f"{where} returned {str(value)[:200]}: {type(error).__name__}: {error}"
        if message:
            problems.append((sort_case(problem, case), message))
    return report(problems, passed)


def report(problems: list, passed: str, shown: int = SHOWN) -> bool:
    """Print the problems (most instructive first, each distinct message once) or ``passed``; True when none."""
    pairs = [p if isinstance(p, tuple) and len(p) == 2 else (None, p) for p in problems]
    pairs.sort(key=lambda p: instructiveness(p[0]) if p[0] is not None else (True, 0))
    messages = distinct([message for _, message in pairs])
    for message in messages[:shown]:
        print(message)
    if len(messages) > shown:
        print(f"... and {len(messages) - shown} other problems")
    if not problems and passed:
        print(passed)
    return not problems


# ---------------------------------------------------------------- older helpers, kept for checks written against them
class Answer:
    """The learner's return value, or the problem that calling the function raised (NotImplementedError passes)."""

    def __init__(self, fn, where: str, *args, **kwargs):
        self.value, self.problem = None, None
        try:
            self.value = fn(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - a wrong answer, reported as such
            self.problem = f"{where} raised {type(error).__name__}: {error}"


def collect(problem, cases, name: str, fallback: str):
    """The problems over ``cases`` (``problem(*case)``); None (after saying so) when the function is not written."""
    try:
        return [(tuple(case), p) for case in cases if (p := problem(*case))]
    except NotImplementedError:
        print(not_implemented_message(name, fallback))
        return None
