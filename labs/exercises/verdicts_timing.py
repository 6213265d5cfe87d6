"""Notebooks 05 and 07's timing verdicts on real runs, built to hold on a busy machine without getting weaker.

Load from other programs only ever delays a rank: a paced action cannot end before its pace, a message cannot arrive
before it is sent. So both verdicts read a run's **fastest** timed step (``labs.course.timing.fastest``), and where a
tolerance has to allow for the runtime's own cost it grows by a quantity **measured in that same step**, never by a
guess:

* ``idle_within_overheads(run, theory)`` (notebook 05): the fastest step's idle share in
  [theory - 0.01, theory + 0.03 + effect], where effect is the idle that step's own measured action durations,
  pauses and message waits explain (``labs.course.timing.overhead_effect``), and its actions within 10% of their
  pace (a run whose every action overran its pace is not explained away). One core kept busy: the fastest-of-three
  idle at v = 4 measured theory + 0.021 to + 0.030 (the old |median - theory| <= 0.03 printed False there).
* ``step_within_simulated(run, link_s)`` (notebook 07): the fastest step within [-1%, +10%] of the simulated one, the
  upper edge raised by the share its own measured action durations lengthen the simulated step (the schedule replayed
  with them and the run's link, ``labs.course.timing.replay``): +2.5 to +4.6% for GPipe with one core busy, where
  GPipe's back-to-back actions put every action's overrun on the critical path.

Each is registered with planted runs made by the simulator (no process): a wrong formula or every action 12% over its
pace must make the first False, a link bypassed or charged twice the second (which, by design, accepts compute that
overran its pace: that is measured, and the claim is about the link). No torch.
"""
from __future__ import annotations

import types

from labs.course.timing import check_timing, fastest, replay
from labs.course.verdicts import case, verdict
from labs.schedules import gpipe, interleaved, one_f_one_b
from labs.theory import idle_fraction
from labs.timeline.costs import Costs, Link, Network
from labs.timeline.simulator import simulate

__all__ = ["idle_within_overheads", "own_overhead", "step_within_simulated"]


def _run(schedule, paced: Costs, real: Costs):
    """A stand-in for a ``PipelineRun`` made by the simulator: ``real`` costs played as its one timed step."""
    return types.SimpleNamespace(schedule=schedule, costs=paced, step_traces=[simulate(schedule, real)],
                                 simulated=simulate(schedule, paced))


def _idle_runs() -> dict:
    """4 ranks at 20/40 ms per action with the runtime's measured overheads (+0.5 ms per action, 0.8 ms per message),
    and one whose every action also ran 12% over its pace."""
    found = {}
    for name, schedule, extra in (("1f1b", one_f_one_b(4, 8), 1.0), ("v4", interleaved(4, 8, 4), 1.0),
                                  ("slow", one_f_one_b(4, 8), 1.12)):
        paced = Costs(0.020, 0.040)
        found[name] = _run(schedule, paced, Costs(0.020 * extra + 0.0005, 0.040 * extra + 0.0005, link_s=0.0008))
    return found


@verdict(holds=lambda: [case(_idle_runs()["1f1b"], idle_fraction(4, 8)),
                        case(_idle_runs()["v4"], idle_fraction(4, 8, 4))],
         fails=lambda: [case(_idle_runs()["1f1b"], 3 / 8, why="the seed's (P-1)/M at M=8"),
                        case(_idle_runs()["v4"], 3 / 8, why="the seed's (P-1)/M, blind to v"),
                        case(_idle_runs()["v4"], idle_fraction(4, 8, 4) - 0.05, why="a formula 0.05 below the truth"),
                        case(_idle_runs()["slow"], idle_fraction(4, 8), why="every action 12% over its pace")])
def idle_within_overheads(run, theory: float, below: float = 0.01, above: float = 0.03) -> bool:
    """The fastest step's idle share within [theory - below, theory + above + effect] (effect: the idle that step's own
    measured overheads explain, ``labs.course.timing.overhead_effect``; never negative here) and its actions within
    10% of their pace (``TimingCheck.overrun``). ``run``: a paced ``PipelineRun``; ``theory``: the idle share a
    formula predicts."""
    check = check_timing(run, theory)
    return theory - below <= check.idle <= theory + above + max(check.effect, 0.0) and check.overrun <= 1.10


def own_overhead(run, link_s: float) -> float:
    """The share (dimensionless) by which the fastest step's own measured action durations lengthen the simulated
    step: the schedule replayed with them and every message ``link_s`` seconds (the run's uniform link latency),
    over ``run.simulated.step_time_s``, less 1. About 0 for a step that ran at its pace."""
    step = fastest(run)
    durations = {e.action: e.duration_s for events in step.events for e in events}
    return replay(run.schedule, durations, link_s) / run.simulated.step_time_s - 1.0


def _link_runs() -> dict:
    """GPipe on 4 ranks, 20/40 ms per action, every link 20 ms: as the runtime runs it (+0.5 ms per action, messages
    0.8 ms over the link), with every action 12% over its pace, with the link bypassed, and with it charged twice."""
    paced = Costs(0.020, 0.040, network=Network(Link(latency_ms=20)))
    plays = {"real": Costs(0.0205, 0.0405, network=Network(Link(latency_ms=20.8))),
             "slow": Costs(0.0224, 0.0448, network=Network(Link(latency_ms=20.8))),
             "bypassed": Costs(0.0205, 0.0405),
             "twice": Costs(0.0205, 0.0405, network=Network(Link(latency_ms=40)))}
    return {name: _run(gpipe(4, 8), paced, real) for name, real in plays.items()}


@verdict(holds=lambda: [case(_link_runs()["real"], 0.020), case(_link_runs()["slow"], 0.020)],
         fails=lambda: [case(_link_runs()["bypassed"], 0.020, why="the link's delay bypassed"),
                        case(_link_runs()["twice"], 0.020, why="every message charged the link twice")])
def step_within_simulated(run, link_s: float, below: float = 0.01, above: float = 0.10) -> bool:
    """The fastest step within [-below, +above + own overhead] of the simulated step (relative; ``own_overhead``:
    what the step's measured action durations add, replayed with the ``link_s`` every message pays)."""
    step_s, simulated_s = fastest(run).step_time_s, run.simulated.step_time_s
    return (1 - below) * simulated_s <= step_s <= (1 + above + max(own_overhead(run, link_s), 0.0)) * simulated_s
