"""Uneven stages and stragglers: one stage, or one rank, that takes longer than the others.

    labs.run_pipeline("1f1b", slow_stages={2: 3.0})     # stage 2's layers take 3x the pace (an unbalanced cut)
    labs.run_pipeline("1f1b", straggler=(1, 2.0))        # every action of rank 1 takes 2x (a slow device)

Both become one (forward, backward) pace per stage, which the runtime pads each stage to and the simulator charges
(``Costs`` with per-stage lists), so a measured and a simulated timeline of the same unbalanced pipeline can be
compared. With one stage per rank the two look alike in a timeline; they differ in their cure (move layers to
other stages, or replace the slow device). With several chunks per rank a straggler slows all of its chunks.
"""
from __future__ import annotations

import math


def _factor(value, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a number > 0 (a slowdown factor, e.g. 2.0 for twice as slow), got {value!r}")
    return float(value)


def stage_paces(pace: tuple[float, float] | None, owners: dict[int, int], slow_stages: dict | None = None,
                straggler: tuple | None = None):
    """The (forward, backward) pace of every stage, or ``pace`` itself when nothing is uneven.

    ``owners`` maps stage -> rank; ``slow_stages`` {stage: factor}; ``straggler`` (rank, factor). Raises ValueError,
    before any process starts, on a stage or rank the run does not have, or on uneven stages without pacing.
    """
    if not slow_stages and straggler is None:
        return pace
    if pace is None:
        raise ValueError("slow_stages and straggler slow down paced compute: give pace_ms=(F, B) (not None)")
    factors = {stage: 1.0 for stage in owners}
    for stage, factor in (slow_stages or {}).items():
        if stage not in factors:
            raise ValueError(f"slow_stages names stage {stage!r}, but the run has stages 0..{len(owners) - 1}")
        factors[stage] *= _factor(factor, f"slow_stages[{stage}]")
    if straggler is not None:
        if not (isinstance(straggler, (tuple, list)) and len(straggler) == 2):
            raise ValueError(f"straggler is (rank, factor), e.g. (1, 2.0); got {straggler!r}")
        rank, factor = straggler
        if rank not in set(owners.values()):
            raise ValueError(f"straggler names rank {rank!r}, but the run has ranks 0..{max(owners.values())}")
        for stage, owner in owners.items():
            if owner == rank:
                factors[stage] *= _factor(factor, "the straggler's factor")
    return [tuple(t * factors[s] for t in pace) for s in sorted(owners)]


def parse_factor(text: str, what: str) -> tuple[int, float]:
    """``"INDEX:FACTOR"`` (the command line's form), e.g. ``"2:3"``."""
    try:
        index, factor = text.split(":")
        return int(index), float(factor)
    except ValueError:
        raise ValueError(f"{what} is INDEX:FACTOR, e.g. 2:3 for three times slower; got {text!r}")
