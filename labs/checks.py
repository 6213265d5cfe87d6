"""Checks of what a learner passes in, before any process starts: each failure says what to change.

    whole_number("micro-batches M", value, low=1, high=MAX_MICROBATCHES)
    pace_seconds(pace_ms)        # None, or (forward, backward) in seconds per layer
    positive_seconds("timeout_s", timeout_s)

The limits say what one machine can run: every rank is a process (``MAX_RANKS``), and a schedule's actions are Python
objects walked by the validator and the simulator. (``labs.runtime.devices.check_device`` checks a device name: it
needs torch, which this module does not import.)
"""
from __future__ import annotations

import math
import numbers

from .errors import InputError

__all__ = ["DEFAULT_PACE_MS", "MAX_BATCH", "MAX_LAYERS", "MAX_MICROBATCHES", "MAX_RANKS", "MAX_VIRTUAL_STAGES",
           "MAX_WIDTH", "number", "pace_seconds", "positive_seconds", "whole_number"]

MAX_RANKS = 64  # processes one launch starts on this machine
# The one default pace, in ms per layer (forward, backward), for labs.run_pipeline, `python -m labs run` and `bench`.
# Why 10,20 and not less: README, "Paced compute" (at 5,10 a 2-core machine's fixed costs are 10-15% of a step).
DEFAULT_PACE_MS = (10.0, 20.0)
MAX_MICROBATCHES = 4096  # a batch splits into at most this many; more only wastes time in Python
MAX_VIRTUAL_STAGES = 64
MAX_LAYERS = 4096
MAX_WIDTH = 16384
MAX_BATCH = 1 << 20


def whole_number(name: str, value, low: int = 1, high: int | None = None, why: str = "") -> int:
    """``value`` as an int in [low, high].

    Raises InputError naming the parameter, the limit and how to fix it (a float such as 2.0 is refused too, with
    the int to write instead).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = f" (write {int(value)}, not {value!r})" if _looks_whole(value) else ""
        raise InputError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}){example}")
    value = int(value)
    if value < low:
        raise InputError(f"{name} must be a whole number >= {low}, got {value}")
    if high is not None and value > high:
        raise InputError(f"{name}={value} is more than this machine can run: at most {high}{why}")
    return value


def _looks_whole(value) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def number(name: str, value, low: float = 0.0, strictly: bool = False) -> float:
    """A finite real number >= low (> low when ``strictly``); InputError saying what was wrong otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strictly and value == low):
        raise InputError(f"{name} must be {'>' if strictly else '>='} {low:g}, got {value!r}")
    return float(value)


def pace_seconds(pace_ms):
    """``pace_ms=(F, B)`` or ``(F, B, W)`` (a split backward's parts) in ms per layer -> seconds; None stays None.

    Raises InputError for anything else (a string, the wrong length, a negative or non-finite time, over 10 s).
    """
    if pace_ms is None:
        return None
    usage = ("pace_ms is (forward_ms, backward_ms) per layer, e.g. (10, 20), or (forward, B, W) for a split "
             "backward, e.g. (10, 10, 10), or None for unpaced compute")
    if isinstance(pace_ms, (str, bytes)) or not hasattr(pace_ms, "__len__") or len(pace_ms) not in (2, 3):
        raise InputError(f"{usage}; got {pace_ms!r}")
    times = [number(f"pace_ms[{i}]", v) for i, v in enumerate(pace_ms)]
    if max(times) > 10_000:
        raise InputError(f"{usage}; {pace_ms!r} asks for more than 10 s per layer")
    return tuple(t / 1000 for t in times)


def positive_seconds(name: str, value) -> float:
    """A finite number of seconds > 0 (a timeout); InputError otherwise."""
    return number(f"{name} (seconds)", value, 0.0, strictly=True)
