"""The timeline a schedule would produce under a cost model (no torch).

``simulate(schedule, Costs(forward_s=..., backward_s=..., link_s=...))`` starts every action as soon as its rank is
free and its inputs have arrived (a message across ranks takes ``link_s`` seconds, plus its way through a
``Network``) and returns a ``Trace``, the same record a real run returns, so simulated and measured timelines are
drawn and compared by the same code. Which stage's output an action waits for comes from
``labs.schedules.lowering``, as in the runtime. The closed forms it should match are in ``labs.theory``.
"""
from __future__ import annotations

from ..schedules import Schedule, backward_kinds, dependencies, output_target, shape, stage_owners, validate
from .costs import Costs
from .trace import Event, Message, RankTrace, Trace

__all__ = ["activations_in_flight", "ideal_time_s", "simulate"]


def simulate(schedule, costs: Costs = Costs()) -> Trace:
    """Timeline of ``schedule`` (anything ``labs.parse`` accepts) under ``costs``; times in seconds.

    Validated first: a broken schedule raises ScheduleError; a per-stage cost list of the wrong length InputError.
    """
    schedule = validate(schedule)
    _, stages, _ = shape(schedule)
    costs.check(stages)
    owners = stage_owners(schedule)
    kinds = backward_kinds(schedule)  # which of I or B sends each input gradient (one schedule may mix them)
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
                deps = dependencies(action, stages, kinds)
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
                        ranks[rank].wait_time_s += received - free_at[rank]
                end = ready + costs.of(action.kind, action.stage)
                ranks[rank].events.append(Event(action, ready, end))
                finished[action] = end
                free_at[rank] = end
                cursor[rank] += 1
                remaining -= 1
                target = output_target(action, stages)
                if target is not None and owners[target] != rank:
                    ranks[rank].messages_sent += 1
    for r in ranks:
        r.finish_s = free_at[r.rank]
    return Trace(ranks)


def _arrival(costs: Costs, links: dict, src: int, dst: int, sent_s: float) -> float:
    """When a message sent at ``sent_s`` reaches ``dst``: ``link_s`` seconds later, plus its way through the network."""
    if costs.network is None:
        return sent_s + costs.link_s
    arrives, links[(src, dst)] = costs.network.deliver(src, dst, costs.message_bytes, sent_s + costs.link_s,
                                                       links.get((src, dst), 0.0))
    return arrives


def ideal_time_s(schedule: Schedule, costs: Costs) -> float:
    """The ideal step time: the busiest rank's compute alone under ``costs`` (no bubble, no message), in seconds.

    For equal stages that is M·(F+B) (a split backward: M·(F+I+W)), the "ideal" of the bubble formulas in
    ``labs.theory``.
    """
    schedule = validate(schedule)
    costs.check(shape(schedule)[1])
    return max(sum(costs.of(a.kind, a.stage) for a in actions) for actions in schedule)


def activations_in_flight(schedule) -> list[int]:
    """Peak number of micro-batches whose activations each rank holds, from the order of its actions alone: a
    (stage, micro-batch) is held from its F until its B, or until its W when split (I keeps what W needs)."""
    return simulate(schedule, Costs(1.0, 1.0, 1.0)).peak_activations
