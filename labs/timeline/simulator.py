"""The timeline a schedule would produce under a cost model, and the closed-form formulas it should match.

``simulate(schedule, Costs(forward=..., backward=..., link=...))`` starts every action as soon as its rank is free and
its inputs have arrived (a message across ranks takes ``link`` seconds) and returns a ``Trace``, the same record a
real run returns, so simulated and measured timelines are drawn and compared by the same code.

Two conventions for the bubble, both correct, often confused (the seed notes call the first one a fraction):

* ``bubble_overhead(P, M, v) = (P-1) / (v*M)``: bubble time relative to the ideal compute time;
* ``idle_fraction(P, M, v) = (P-1) / (v*M + P-1)``: the share of the step that ranks sit idle.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..schedules import BACKWARD, FORWARD, WEIGHT, dependencies, shape, stage_owners, uses_weight_step, validate
from ..timeline.trace import Event, Message, RankTrace, Trace


@dataclass(frozen=True)
class Costs:
    """Time of one action on one stage (a number, or a list with one number per stage), and of one message.

    When a schedule has W actions, ``backward`` is the B part (input gradient) and ``weight`` the W part.
    """

    forward: float | list = 1.0
    backward: float | list = 2.0
    weight: float | list = 0.0
    link: float = 0.0
    network: object = None  # a labs.Network: messages of message_bytes pay latency + bytes/bandwidth, one at a time
    message_bytes: int = 0

    def __post_init__(self):
        for name in ("forward", "backward", "weight", "link"):
            value = getattr(self, name)
            for v in (value if isinstance(value, (list, tuple)) and name != "link" else [value]):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < float("inf")):
                    raise ValueError(f"Costs({name}=...) takes seconds: finite numbers >= 0 "
                                     f"(one, or a list with one per stage), got {value!r}")

    def check(self, num_stages: int) -> None:
        """A per-stage list must have one entry per stage."""
        for name in ("forward", "backward", "weight"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) != num_stages:
                raise ValueError(f"Costs({name}={list(value)!r}) has {len(value)} entries for {num_stages} stages: "
                                 f"give one number per stage, or a single number for all")

    @classmethod
    def per_layer(cls, forward: float, backward: float, layers_per_stage: int | list, link: float = 0.0,
                  weight: float = 0.0) -> "Costs":
        """Costs of stages made of ``layers_per_stage`` layers, each taking ``forward``/``backward`` seconds."""
        if isinstance(layers_per_stage, int):
            return cls(forward * layers_per_stage, backward * layers_per_stage, weight * layers_per_stage, link)
        return cls([forward * n for n in layers_per_stage], [backward * n for n in layers_per_stage],
                   [weight * n for n in layers_per_stage], link)

    def of(self, kind: str, stage: int) -> float:
        value = {FORWARD: self.forward, BACKWARD: self.backward, WEIGHT: self.weight}[kind]
        return value[stage] if isinstance(value, (list, tuple)) else value


def simulate(schedule, costs: Costs = Costs()) -> Trace:
    """Timeline of ``schedule`` under ``costs`` (validated first: a broken schedule raises ScheduleError)."""
    schedule = validate(schedule)
    _, stages, _ = shape(schedule)
    costs.check(stages)
    owners = stage_owners(schedule)
    weight = uses_weight_step(schedule)
    finished: dict = {}
    ranks = [RankTrace(rank=r) for r in range(len(schedule))]
    free_at = [0.0] * len(schedule)
    links: dict = {}  # (src, dst) -> when that link is free again (a Network carries one message at a time)
    cursor = [0] * len(schedule)
    remaining = sum(len(acts) for acts in schedule)
    while remaining:
        for rank, actions in enumerate(schedule):
            while cursor[rank] < len(actions):
                action = actions[cursor[rank]]
                deps = dependencies(action, stages, weight)
                if any(d not in finished for d in deps):
                    break
                arrivals = [finished[d] if owners[d.stage] == rank else _arrival(costs, links, owners[d.stage], rank,
                                                                                  finished[d]) for d in deps]
                ready = max([free_at[rank]] + arrivals)
                for d, arrives in zip(deps, arrivals):  # what the runtime's transport records
                    if owners[d.stage] != rank:
                        received = max(free_at[rank], arrives)
                        ranks[rank].messages.append(Message(owners[d.stage], rank, action.kind, action.stage,
                                                            action.microbatch, costs.message_bytes, finished[d],
                                                            free_at[rank], received))
                        ranks[rank].wait_time += received - free_at[rank]
                end = ready + costs.of(action.kind, action.stage)
                ranks[rank].events.append(Event(action, ready, end))
                finished[action] = end
                free_at[rank] = end
                cursor[rank] += 1
                remaining -= 1
                crosses = [s for s in _message_targets(action, stages) if owners[s] != rank]
                ranks[rank].messages_sent += len(crosses)
    for r in ranks:
        r.finish = free_at[r.rank]
    return Trace(ranks)


def _arrival(costs: Costs, links: dict, src: int, dst: int, sent: float) -> float:
    """When a message sent at ``sent`` reaches ``dst``: ``link`` seconds later, plus its way through the network."""
    if costs.network is None:
        return sent + costs.link
    arrives, links[(src, dst)] = costs.network.deliver(src, dst, costs.message_bytes, sent + costs.link,
                                                       links.get((src, dst), 0.0))
    return arrives


def _message_targets(action, stages: int) -> list[int]:
    """Stages that receive a message when ``action`` finishes: the next stage's input, or the previous one's grad."""
    if action.kind == FORWARD and action.stage < stages - 1:
        return [action.stage + 1]
    if action.kind == BACKWARD and action.stage > 0:
        return [action.stage - 1]
    return []


def ideal_time(schedule, costs: Costs) -> float:
    """Step time of the schedule with these costs and a free link: what a perfect runtime would take."""
    free = Costs(costs.forward, costs.backward, costs.weight, link=0.0, message_bytes=costs.message_bytes)
    return simulate(schedule, free).step_time


def bubble_overhead(num_stages: int, num_microbatches: int, virtual_stages: int = 1) -> float:
    """Bubble time over ideal compute time: (P-1)/(v*M). 3.0 (300%) for P=4, M=1, not 75%."""
    return (num_stages - 1) / (virtual_stages * num_microbatches)


def idle_fraction(num_stages: int, num_microbatches: int, virtual_stages: int = 1) -> float:
    """Idle share of the step: (P-1)/(v*M+P-1). 0.75 for P=4, M=1; 0.27 for M=8; 0.16 for M=16."""
    return (num_stages - 1) / (virtual_stages * num_microbatches + num_stages - 1)


def activations_in_flight(schedule) -> list[int]:
    """Peak number of micro-batches whose activations each rank holds, from the order of its actions alone."""
    return simulate(schedule, Costs(1.0, 1.0, 1.0)).peak_activations
