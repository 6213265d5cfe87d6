"""The errors the course raises, in two families: bad input (stopped before any process starts) and run failures.

    LabsError
    ├── InputError (also a ValueError)   an argument that cannot work; the message says what to pass instead
    │   ├── ScheduleError                a schedule that cannot run (names the rank and the action)
    │   └── ModelError                   a model or batch that cannot be cut as asked
    │       └── GridError                a P x T x D grid that cannot run this model and batch
    └── RunFailure                       ranks that started and failed or hung
        (labs.runtime.failures: RankFailed, also a RuntimeError; LaunchTimeout, also a TimeoutError)

Catch ``InputError`` to report bad input (the command line exits with code 2), ``RunFailure`` for a run that broke
(exit code 1). Being a ``ValueError`` too, an ``InputError`` is caught by code that expects the standard library's.
"""
from __future__ import annotations

__all__ = ["GridError", "InputError", "LabsError", "ModelError", "RunFailure", "ScheduleError"]


class LabsError(Exception):
    """Every error this package raises on purpose."""


class InputError(LabsError, ValueError):
    """An argument that cannot work; the message says which and what to pass instead."""


class ScheduleError(InputError):
    """A schedule that cannot run: the message names the rank and the action."""


class ModelError(InputError):
    """A model or batch that cannot be cut as asked; the message says what to change."""


class GridError(ModelError):
    """A grid (P pipeline ranks x T tensor-parallel ranks x D replicas) that cannot run: what to change."""


class RunFailure(LabsError):
    """Ranks were started and did not all finish: a rank raised or died, or the run passed its time limit."""
