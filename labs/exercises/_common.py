"""What every exercise check shares: calling the learner's function, collecting problems, reporting them.

A problem function takes one case and returns None when the learner's answer is right, or a sentence saying what is
wrong (which call, what came back, what was expected). NotImplementedError passes through it, so a check can say
"not implemented yet" and the notebook can carry on with the reference.
"""
from __future__ import annotations


class Answer:
    """The learner's return value, or the problem that calling the function raised."""

    def __init__(self, fn, where: str, *args, **kwargs):
        self.value, self.problem = None, None
        try:
            self.value = fn(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - a wrong answer, reported as such
            self.problem = f"{where} raised {type(error).__name__}: {error}"


def collect(problem, cases, name: str, fallback: str):
    """The problems over ``cases``; None (after saying so) when the learner has not written the function yet."""
    try:
        return [p for case in cases if (p := problem(*case))]
    except NotImplementedError:
        print(f"not implemented yet: {name} (the notebook carries on with {fallback})")
        return None


def report(problems: list, passed: str, shown: int | None = None) -> bool:
    """Print the problems (the first ``shown`` of them) or the passing message; True when there are none."""
    for problem in problems[:shown]:
        print(problem)
    if shown is not None and len(problems) > shown:
        print(f"... and {len(problems) - shown} more cases wrong")
    if not problems:
        print(passed)
    return not problems

