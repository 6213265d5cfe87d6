"""Every printed verdict is a registered function that a planted wrong input makes False.

A notebook that prints a claim ("measured idle within 0.03 of theory -> yes") calls a small pure function that
returns ``True`` or ``False``, and that function is registered with the inputs it must accept (``holds``) and the
planted wrong ones it must reject (``fails``: the seed's formula, a wrong diagnosis, a link cost bypassed, a shuffled
order). ``tests/test_verdicts.py`` calls every registered verdict on its cases, so a verdict that no input can make
False, or one that is always False, fails the suite; it also scans ``solutions/*.ipynb`` for printed verdicts that
do not go through a registered function. A claim for which no wrong input exists is prose, not a verdict.

    from labs.course.verdicts import case, verdict

    @verdict(holds=[case(measured=0.283, theory=0.273)],
             fails=[case(measured=0.283, theory=0.375, why="the seed's (P-1)/M at P=4, M=8")])
    def idle_in_band(measured, theory, below=0.01, above=0.03) -> bool:
        ...

Verdicts live here (the generic ones below), in ``labs.course.timing`` (timing verdicts on a run), or in a
notebook's own ``labs.exercises.nbNN`` with the same decorator. ``fails``/``holds`` may be a function returning the
list, for cases that are expensive to build (a simulated trace): it is called by the test, not on import. No torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["REGISTRY", "Case", "Verdict", "case", "close", "idle_in_band", "problems", "step_matches", "verdict",
           "within_abs", "within_rel", "yes"]


@dataclass(frozen=True)
class Case:
    """One input of a verdict: positional ``args``, keyword ``kwargs`` and ``why`` (what was planted, for a
    negative control)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    why: str = ""

    def __call__(self, fn):
        return fn(*self.args, **self.kwargs)

    def __str__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"({', '.join(shown)[:200]})" + (f" [{self.why}]" if self.why else "")


def case(*args, why: str = "", **kwargs) -> Case:
    """The inputs of one call: ``case(0.28, 0.27, why="...")`` or ``case(measured=0.28, theory=0.27)``."""
    return Case(args, kwargs, why)


@dataclass
class Verdict:
    """A registered verdict: the function and its cases (lists of ``Case``, or functions returning one)."""

    fn: object
    holds: object
    fails: object

    @property
    def name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    def cases(self, which: str) -> list:
        """The ``holds`` or ``fails`` cases, built now if they were given as a function."""
        found = getattr(self, which)
        return list(found() if callable(found) else found)


REGISTRY: dict[str, Verdict] = {}  # "module.function" -> Verdict, filled as modules are imported


def verdict(*, holds, fails):
    """Register the decorated function as a verdict: ``holds`` the inputs on which it must return True, ``fails``
    the planted wrong inputs on which it must return False (each a list of ``case(...)``, at least one, or a
    function returning that list). Returns the function unchanged. Raises TypeError for an empty or missing list."""
    def register(fn):
        for which, found in (("holds", holds), ("fails", fails)):
            if not callable(found) and (not isinstance(found, (list, tuple)) or not found
                                        or not all(isinstance(c, Case) for c in found)):
                raise TypeError(f"verdict {fn.__qualname__}: {which}= needs a non-empty list of case(...) (or a "
                                f"function returning one): a verdict needs a planted input that makes it "
                                f"{'True' if which == 'holds' else 'False'}")
        REGISTRY[f"{fn.__module__}.{fn.__qualname__}"] = Verdict(fn, holds, fails)
        return fn
    return register


def problems(entry: Verdict) -> list[str]:
    """What is wrong with one registered verdict: a ``holds`` case that does not return True, a ``fails`` case that
    does not return False (a result must be a bool: ``True``/``False`` or numpy's), or no case at all."""
    found = []
    for which, wanted in (("holds", True), ("fails", False)):
        cases = entry.cases(which)
        if not cases:
            found.append(f"{entry.name}: no {which} case")
        for c in cases:
            try:
                result = c(entry.fn)
            except Exception as error:  # noqa: BLE001 - reported as the problem
                found.append(f"{entry.name}{c}: raised {type(error).__name__}: {error}")
                continue
            if type(result).__name__ not in ("bool", "bool_") or bool(result) is not wanted:
                found.append(f"{entry.name}{c}: returned {result!r}, expected {wanted}")
    return found


def yes(ok) -> str:
    """``"yes"`` or ``"no"``: how a notebook prints a verdict after ``->``."""
    return "yes" if ok else "no"


@verdict(holds=[case(0.283, 0.273, 0.03), case(0.245, 0.273, 0.03)],
         fails=[case(0.283, 0.375, 0.03, why="the seed's (P-1)/M at P=4, M=8 taken for the idle share"),
                case(float("nan"), 0.273, 0.03, why="a measurement that failed (NaN)")])
def within_abs(measured, expected, tolerance) -> bool:
    """|measured - expected| <= tolerance (same unit as both). NaN is never within."""
    return abs(measured - expected) <= tolerance


@verdict(holds=[case(1.344, 1.320, 0.10)],
         fails=[case(1.60, 1.320, 0.10, why="a step 21% slower"), case(0.66, 1.320, 0.10, why="half the step")])
def within_rel(measured, expected, rel) -> bool:
    """|measured - expected| <= rel * |expected| (a relative tolerance; both in the same unit)."""
    return abs(measured - expected) <= rel * abs(expected)


@verdict(holds=[case(0.283, 0.273), case(0.265, 0.273)],
         fails=[case(0.283, 0.375, why="the seed's (P-1)/M at P=4, M=8"),
                case(0.751, 3.0, why="the seed's (P-1)/M at P=4, M=1 (an overhead, not a share)"),
                case(0.20, 0.273, why="a step faster than the paced schedule allows")])
def idle_in_band(measured, theory, below=0.01, above=0.03) -> bool:
    """A paced run can only add time to its schedule (load delays a rank, never speeds it up), so its measured idle
    share lies in [theory - below, theory + above]: one-sided, wider above. Both are fractions of the step."""
    return theory - below <= measured <= theory + above


@verdict(holds=[case(1.344, 1.320), case(1.31, 1.320)],
         fails=[case(0.660, 1.320, why="a step half as long as its schedule allows (a link bypassed)"),
                case(1.50, 1.320, why="a step 14% over the simulated one")])
def step_matches(step_s, simulated_s, below=0.01, above=0.10) -> bool:
    """A measured step within [-below, +above] of its simulated time, relative (one-sided: a step can only be
    delayed, so ``below`` is small). Both in seconds."""
    return (1 - below) * simulated_s <= step_s <= (1 + above) * simulated_s


@verdict(holds=[case(3e-8, 1e-5), case(0.0, 1e-5)],
         fails=[case(0.012, 1e-5, why="a stage that skips its loss / M scaling"),
                case(float("nan"), 1e-5, why="a NaN gradient")])
def close(error, tolerance=1e-5) -> bool:
    """An error (a max absolute difference, e.g. ``run.max_grad_error``) at most ``tolerance``; NaN is not close.
    The planted inputs here show the function can say no; the runs that produce them are each notebook's tests."""
    return not math.isnan(error) and error <= tolerance
