"""The timeline a schedule would produce under a cost model (no torch).

``simulate(schedule, Costs(forward_s=..., backward_s=..., link_s=...))`` starts every action as soon as its rank is
free and its inputs have arrived (a message across ranks takes ``link_s`` seconds, plus its way through a
``Network``) and returns a ``Trace``, the same record a real run returns, so simulated and measured timelines are
drawn and compared by the same code. Which stage's output an action waits for comes from
``labs.schedules.lowering``, as in the runtime. The closed forms it should match are in ``labs.theory``.
"""
from __future__ import annotations

from ..schedules import Schedule, ScheduleError, backward_kinds, dependencies, output_target, shape, stage_owners
from ..schedules import validate
from .costs import Costs
from .trace import Event, Message, RankTrace, Trace

__all__ = ["activations_in_flight", "ideal_time_s", "simulate"]


def simulate(schedule, costs: Costs = Costs(), together: frozenset = frozenset(), pair_s: float | None = None) -> Trace:
    """Timeline of ``schedule`` (anything ``labs.parse`` accepts) under ``costs``; times in seconds.

    ``together``: actions that start only when the next action on their rank can start too, the two then running
    back to back: DualPipeV's overlapped (forward, backward) pairs as PyTorch issues them (``OVERLAP_F_B``, see
    ``labs.schedules.dualpipe``); ``pair_s``: seconds such a pair takes when its two halves overlap (default: the
    sum of their costs; shorter is what overlapping buys). Validated first: a broken schedule raises ScheduleError;
    a per-stage cost list of the wrong length InputError.
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
        progress = False
        for rank, actions in enumerate(schedule):
            while cursor[rank] < len(actions):
                size = 2 if actions[cursor[rank]] in together and cursor[rank] + 1 < len(actions) else 1
                group = actions[cursor[rank]:cursor[rank] + size]
                deps = [dependencies(action, stages, kinds) for action in group]
                if any(d not in finished for ds in deps for d in ds if d not in group):
                    break
                ready = free_at[rank]
                for action, ds in zip(group, deps):
                    ready = max([ready] + [_received(costs, links, ranks[rank], owners, rank, action, d, finished,
                                                     free_at[rank]) for d in ds if d not in group])
                durations = [costs.of(a.kind, a.stage) for a in group]
                if size == 2 and pair_s is not None:  # the pair takes pair_s: the forward its own time, then the rest
                    durations = [min(durations[0], pair_s), max(pair_s - durations[0], 0.0)]
                for action, duration in zip(group, durations):
                    ranks[rank].events.append(Event(action, ready, ready + duration))
                    ready = finished[action] = ready + duration
                    target = output_target(action, stages)
                    if target is not None and owners[target] != rank:
                        ranks[rank].messages_sent += 1
                free_at[rank] = ready
                cursor[rank] += size
                remaining -= size
                progress = True
        if not progress:
            raise ScheduleError("the simulator cannot go on: a 'together' pair whose second action waits for a "
                                "message its rank would only send later; split the pair")
    for r in ranks:
        r.finish_s = free_at[r.rank]
    return Trace(ranks)


def _received(costs: Costs, links: dict, trace: RankTrace, owners: dict, rank: int, action, dep, finished: dict,
              free_s: float) -> float:
    """When ``dep``'s output is on ``rank`` for ``action``: at once on the same rank; else after its message, which
    is recorded as the runtime's transport records it (sent, needed when the rank was free, received)."""
    if owners[dep.stage] == rank:
        return finished[dep]
    arrives = _arrival(costs, links, owners[dep.stage], rank, finished[dep])
    received = max(free_s, arrives)
    trace.messages.append(Message(owners[dep.stage], rank, action.kind, action.stage, action.microbatch,
                                  costs.message_bytes, finished[dep], free_s, received))
    trace.wait_time_s += received - free_s
    return arrives


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
