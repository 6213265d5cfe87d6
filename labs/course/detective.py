"""Mystery pipelines for notebook 09: real runs whose cause of slowness the notebook does not show.

    run = mystery("B")                   # a real run; what is wrong with it is for you to find
    fixed = rerun("B", slow_stages={})   # the same run with one setting changed: did that fix it?

Every mystery is P = 4 ranks, one layer each, paced at 20 ms forward and 40 ms backward per layer (so measured idle
fractions can be compared with theory to 0.03), 1F1B. What each one hides is in ``_MYSTERIES`` below: reading it
spoils the game.
"""
from __future__ import annotations

from ..errors import InputError
from ..pipeline import PipelineRun, run_pipeline
from ..timeline.costs import Link, Network

__all__ = ["BASE", "NAMES", "mystery", "rerun", "settings"]

BASE = dict(schedule="1f1b", P=4, M=8, layers=4, pace_ms=(20, 40))
_MYSTERIES = {
    "A": dict(M=2),
    "B": dict(slow_stages={1: 2.5}),
    "C": dict(network=Network(Link(0), {(2, 3): Link(latency_ms=40)})),
    "D": dict(M=2, network=Network(Link(0), {(0, 1): Link(latency_ms=40)})),
}
NAMES = tuple(_MYSTERIES)


def settings(name: str, **changes) -> dict:
    """The run_pipeline arguments of mystery ``name`` with ``changes`` applied; InputError for an unknown name or
    a setting a rerun cannot change."""
    if name not in _MYSTERIES:
        raise InputError(f"no mystery {name!r}: choose one of {', '.join(NAMES)}")
    unknown = set(changes) - {"M", "slow_stages", "network", "straggler", "pace_ms"}
    if unknown:
        raise InputError(f"a rerun can change M, slow_stages, network, straggler or pace_ms, not "
                         f"{', '.join(sorted(unknown))}")
    return {**BASE, **_MYSTERIES[name], **changes}


def mystery(name: str) -> PipelineRun:
    """Run mystery ``name`` for real."""
    return run_pipeline(**settings(name))


def rerun(name: str, **changes) -> PipelineRun:
    """Run mystery ``name`` again with some settings changed (``M=16``, ``slow_stages={}``,
    ``network=None``, ``straggler=None``): the experiment that tests a diagnosis."""
    return run_pipeline(**settings(name, **changes))
