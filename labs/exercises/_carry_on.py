"""After a check, carry on with the learner's function or with labs' reference, and say which (kernel side).

    ring, label = carry_on(ok, ring_pass, reference_ring_pass, "ring_pass", "the reference ring pass")
    print(f"{label}: rank 0 received ...")        # "your ring_pass: ..." or "labs' reference ring pass ...: ..."
    reveal(ok, "The closed form: ...", "gpipe_step_time")

The student notebooks are executed and committed with their outputs, so whatever a notebook prints after a check
is printed for the reference in the unsolved notebook: every later line and plot title that shows a result uses the
label, never "your" alone. ``reveal`` prints an exercise's answer (a closed form, the key count of an algorithm)
only once the learner's check has passed.
"""
from __future__ import annotations

__all__ = ["carry_on", "reveal"]


def carry_on(ok: bool, mine, reference, what: str, reference_name: str):
    """(the function to use, its label): ``mine`` and "your WHAT" when ``ok``, else ``reference`` and
    "REFERENCE_NAME (your WHAT has not passed its check yet)"."""
    if ok:
        return mine, f"your {what}"
    return reference, f"{reference_name} (your {what} has not passed its check yet)"


def reveal(ok: bool, text: str, what: str) -> bool:
    """Print ``text`` when ``ok``; else one line saying it appears once ``what`` passes its check. Returns ``ok``."""
    print(text if ok else f"(the answer appears here once your {what} passes its check)")
    return ok
