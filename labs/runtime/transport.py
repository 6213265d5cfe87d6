"""How one rank's pipeline messages travel: tagged (any arrival order) or in order (NCCL's first in, first out).

``Links`` is what ``labs.runtime.step`` uses during one step: non-blocking sends, byte counts, and receives in one of two
ways (``tagged`` chooses):

* **tagged** (gloo): every receive of the step is posted up front with a tag naming its action, so messages match
  whatever order they arrive in, and any schedule that ``validate`` accepts runs correctly.
* **in order** (NCCL ignores tags): a receive is posted when its action needs it, and the messages between two ranks
  match first in, first out. That is correct only if each receiver consumes a peer's messages in the order the peer
  sends them. ``check_in_order(schedule)`` checks exactly that before any process starts and names the two actions
  that cross; ``run_pipeline`` calls it whenever the transport is in order (on NCCL, or forced with
  ``transport="in_order"`` to emulate NCCL on gloo).
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist

from ..schedules import BACKWARD, FORWARD, ScheduleError, shape, stage_owners


def _source(action, num_stages: int):
    """The stage whose message ``action`` consumes, or None (first stage's forward, last stage's backward)."""
    if action.kind == FORWARD and action.stage > 0:
        return action.stage - 1
    if action.kind == BACKWARD and action.stage < num_stages - 1:
        return action.stage + 1
    return None


def _target(action, num_stages: int):
    """The stage that receives what ``action`` produces, or None."""
    if action.kind == FORWARD and action.stage < num_stages - 1:
        return action.stage + 1
    if action.kind == BACKWARD and action.stage > 0:
        return action.stage - 1
    return None


def check_in_order(schedule) -> None:
    """Raise ScheduleError if, with in-order (untagged) messages, a receive would get another action's message.

    For every pair of ranks (sender, receiver), the receiver's actions consume the sender's messages in the
    receiver's list order; the sender produces them in its own list order. The two sequences must be equal.
    """
    _, num_stages, _ = shape(schedule)
    owners = stage_owners(schedule)
    sent: dict = {}  # (sender, receiver) -> [(message key, producing action)]
    consumed: dict = {}  # (sender, receiver) -> [(message key, consuming action)]
    for rank, actions in enumerate(schedule):
        for a in actions:
            target, source = _target(a, num_stages), _source(a, num_stages)
            if target is not None and owners[target] != rank:
                sent.setdefault((rank, owners[target]), []).append(((a.kind, target, a.microbatch), a))
            if source is not None and owners[source] != rank:
                consumed.setdefault((owners[source], rank), []).append(((a.kind, a.stage, a.microbatch), a))
    for (sender, receiver), messages in sorted(sent.items()):
        for (key, producer), (want, consumer) in zip(messages, consumed.get((sender, receiver), [])):
            if key != want:
                needed = next(p for k, p in messages if k == want)
                raise ScheduleError(
                    f"on an in-order transport (NCCL: messages between two ranks match first in, first out) "
                    f"{consumer} on rank {receiver} would receive {producer}'s message: rank {sender} sends for "
                    f"{producer} before {needed}, but rank {receiver} runs {consumer} (which needs {needed}'s "
                    f"message) first. Let both ranks handle these messages in the same order (swap {producer} and "
                    f"{needed} on rank {sender}, or the actions that consume them on rank {receiver})")


class Links:
    """The messages of one step on one rank: receives (tagged or in order), non-blocking sends, byte counts."""

    def __init__(self, rank, actions, owners, num_stages, num_microbatches, shape_, device, trace, tagged: bool):
        self.rank, self.owners, self.stages, self.microbatches = rank, owners, num_stages, num_microbatches
        self.shape, self.device, self.trace, self.tagged = shape_, device, trace, tagged
        self.via_cpu = dist.get_backend() == "gloo" and device != "cpu"
        self.local: dict = {}
        self.pending: dict = {}
        self.sends: list = []
        if self.tagged:
            for action in actions:
                source = _source(action, num_stages)
                if source is not None and owners[source] != rank:
                    self.pending[(action.kind, action.stage, action.microbatch)] = self._post(action, source)

    def _tag(self, kind: str, stage: int, microbatch: int) -> int:
        return (stage * 2 + (kind == BACKWARD)) * self.microbatches + microbatch

    def _post(self, action, source):
        buffer = torch.empty(self.shape, device="cpu" if self.via_cpu or self.device == "cpu" else self.device)
        tag = self._tag(action.kind, action.stage, action.microbatch) if self.tagged else 0
        return buffer, dist.irecv(buffer, self.owners[source], tag=tag)

    def receive(self, action) -> torch.Tensor:
        key = (action.kind, action.stage, action.microbatch)
        if key in self.local:
            return self.local.pop(key)
        buffer, request = (self.pending.pop(key) if key in self.pending
                           else self._post(action, _source(action, self.stages)))
        started = time.perf_counter()
        request.wait()
        self.trace.wait_time += time.perf_counter() - started
        self.trace.bytes_received += buffer.numel() * buffer.element_size()
        self.trace.messages_received += 1
        return buffer.to(self.device)

    def send(self, tensor: torch.Tensor, kind: str, to_stage: int, microbatch: int) -> None:
        if self.owners[to_stage] == self.rank:
            self.local[(kind, to_stage, microbatch)] = tensor.detach().clone()
            return
        payload = tensor.detach().cpu() if self.via_cpu else tensor.detach().contiguous()
        tag = self._tag(kind, to_stage, microbatch) if self.tagged else 0
        self.sends.append((payload, dist.isend(payload, self.owners[to_stage], tag=tag)))
        self.trace.bytes_sent += payload.numel() * payload.element_size()
        self.trace.messages_sent += 1

    def finish(self) -> None:
        for _, request in self.sends:
            request.wait()
        self.sends.clear()
