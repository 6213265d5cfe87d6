"""Time limits per cell, calibrated on the solved notebook, so that a looping cell does not cost minutes every time.

The solved notebooks in ``solutions/`` are executed with nbclient, which records when each cell started and
finished (``metadata.execution``). A submission's cell gets ``max(FLOOR_S, FACTOR * t_ref)`` seconds, capped by the
grader's ``step_timeout_s``, where ``t_ref`` is what the same cell (same cell id; else the same position when the
notebook has the same number of cells) took in the solved notebook. Notebook 02's check cell took 0.02 s there, so a
learner's ``idle_fraction`` that loops forever costs ``FLOOR_S`` (30 s) in it instead of 180 s; its sweep took about
31 s, so it gets 155 s. A cell the solved notebook does not have (a learner's own) gets ``step_timeout_s``.

FACTOR and FLOOR_S leave room for a busy machine (one core taken by something else doubles a paced cell's wall time
at worst; a cold kernel imports torch in the first cell) and for grading several notebooks at once (``--jobs``).
"""
from __future__ import annotations

from datetime import datetime

__all__ = ["FACTOR", "FLOOR_S", "cell_limits", "recorded_seconds"]

FACTOR = 5.0
FLOOR_S = 30.0


def recorded_seconds(cell) -> float | None:
    """Seconds nbclient recorded for a code cell (``iopub.execute_input`` to ``shell.execute_reply``), or None."""
    timing = (cell.get("metadata") or {}).get("execution") or {}
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None


def cell_limits(submission, reference, step_timeout_s: float) -> dict:
    """{index of a code cell in ``submission``: seconds} for the cells that the solved ``reference`` notebook (both
    nbformat notebooks) recorded a time for; the others are left out (the caller gives them ``step_timeout_s``)."""
    if reference is None:
        return {}
    by_id = {cell.get("id"): cell for cell in reference.cells if cell.get("id")}
    same_shape = len(submission.cells) == len(reference.cells)
    limits = {}
    for index, cell in enumerate(submission.cells):
        if cell.cell_type != "code":
            continue
        twin = by_id.get(cell.get("id")) or (reference.cells[index] if same_shape else None)
        seconds = recorded_seconds(twin) if twin is not None and twin.cell_type == "code" else None
        if seconds is not None:
            limits[index] = min(step_timeout_s, max(FLOOR_S, FACTOR * seconds))
    return limits
