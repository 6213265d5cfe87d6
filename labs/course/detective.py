"""Mystery pipelines for notebook 09: real runs whose cause of slowness the notebook does not show.

    run = mystery("B")                   # a real run; what is wrong with it is for you to find
    fixed = rerun("B", slow_stages={})   # the same run with one setting changed: did that fix it?
    trace = simulate("B", M=16)          # the same settings through the simulator (no process): a prediction

Every mystery is P = 4 ranks, one layer each, paced at 20 ms forward and 40 ms backward per layer (so measured idle
fractions can be compared with theory to 0.03), 1F1B. What each one hides is in ``_MYSTERIES`` below: reading it
spoils the game.
"""
from __future__ import annotations

from .. import checks
from ..errors import InputError
from ..models.cut import split_layers
from ..pipeline import PipelineRun, run_pipeline
from ..runtime.pacing import stage_paces, three_way
from ..schedules import make, stage_owners
from ..timeline.costs import Costs, Link, Network, as_network
from ..timeline.simulator import simulate as _simulate
from ..timeline.trace import Trace

__all__ = ["BASE", "HEALTHY_M", "NAMES", "mystery", "rerun", "settings", "simulate"]

BASE = dict(schedule="1f1b", P=4, M=8, layers=4, pace_ms=(20, 40))
_MYSTERIES = {
    "A": dict(M=2),
    "B": dict(slow_stages={1: 2.5}),
    "C": dict(network=Network(Link(0), {(2, 3): Link(latency_ms=40)})),
    "D": dict(M=2, network=Network(Link(0), {(0, 1): Link(latency_ms=40)})),
}
NAMES = tuple(_MYSTERIES)
HEALTHY_M = BASE["M"]  # what every mystery's fix should bring the pipeline back to


def settings(name: str, **changes) -> dict:
    """The run_pipeline arguments of mystery ``name`` with ``changes`` applied; InputError for an unknown name or
    a setting a rerun cannot change."""
    if name not in _MYSTERIES:
        raise InputError(f"no mystery {name!r}: choose one of {', '.join(NAMES)}")
    unknown = set(changes) - {"M", "slow_stages", "network", "straggler", "pace_ms", "steps"}
    if unknown:
        raise InputError(f"a rerun can change M, slow_stages, network, straggler, pace_ms or steps, not "
                         f"{', '.join(sorted(unknown))}")
    return {**BASE, **_MYSTERIES[name], **changes}


def mystery(name: str) -> PipelineRun:
    """Run mystery ``name`` for real."""
    return run_pipeline(**settings(name))


def rerun(name: str, **changes) -> PipelineRun:
    """Run mystery ``name`` again with some settings changed (``M=16``, ``slow_stages={}``,
    ``network=None``, ``straggler=None``): the experiment that tests a diagnosis."""
    return run_pipeline(**settings(name, **changes))


def simulate(name: str, **changes) -> Trace:
    """Mystery ``name`` (with ``changes``) through the simulator instead of real ranks: the same schedule, paced
    costs per stage (slow stages and straggler included) and network. What a run of it should measure, in
    microseconds rather than seconds; the tests use it as the planted input of the notebook's verdicts."""
    s = settings(name, **changes)
    schedule = make(s["schedule"], s["P"], s["M"])
    paces = stage_paces(checks.pace_seconds(s["pace_ms"]), stage_owners(schedule), s.get("slow_stages"),
                        s.get("straggler"))
    blocks = split_layers(s["layers"], len(stage_owners(schedule)))
    per_stage = [three_way(p) for p in (paces if isinstance(paces, list) else [paces] * len(blocks))]
    batch = s.get("batch_size", 64)
    costs = Costs([f * len(b) for (f, _, _), b in zip(per_stage, blocks)],
                  [(bw + w) * len(b) for (_, bw, w), b in zip(per_stage, blocks)],
                  network=as_network(s.get("network")), message_bytes=4 * (batch // s["M"]) * 64)
    return _simulate(schedule, costs)
