"""Count the point-to-point messages a learner's rank function posts (kernel side, inside each rank).

A ring pass or a pipeline stage that returns the right tensors without receiving anything has computed its
neighbour's data locally instead of receiving it: the graded score and the visible check say so. Every
``torch.distributed`` send and receive (``send``, ``isend``, ``recv``, ``irecv``, ``batch_isend_irecv``, also through
an alias) ends in a method of the process group, which is where the counting sits while ``fn`` runs.
"""
from __future__ import annotations

__all__ = ["Counted", "silent_ranks"]

_METHODS = {"send": "sent", "recv": "received", "recv_anysource": "received"}


class Counted:
    """``fn`` as a rank function that returns ``{"result": fn(...), "sent": n, "received": m}``."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        import torch.distributed as dist
        kind = dist.ProcessGroup
        counts = {"sent": 0, "received": 0}
        originals = {name: getattr(kind, name) for name in _METHODS}

        def counting(name):
            original = originals[name]

            def method(self, *a, **k):
                counts[_METHODS[name]] += 1
                return original(self, *a, **k)
            return method

        for name in _METHODS:
            setattr(kind, name, counting(name))
        try:
            result = self.fn(*args, **kwargs)
        finally:
            for name, original in originals.items():
                setattr(kind, name, original)
        return {"result": result, **counts}


def silent_ranks(reports: list, need_send: bool = True) -> str | None:
    """A sentence naming the ranks that received (or sent) nothing; None when every rank did both."""
    quiet = [r for r, report in enumerate(reports)
             if not isinstance(report, dict) or report.get("received", 0) < 1 or
             (need_send and report.get("sent", 0) < 1)]
    if not quiet:
        return None
    return (f"rank{'s' if len(quiet) > 1 else ''} {', '.join(map(str, quiet))} returned without receiving or sending "
            f"a message: compute only your own part and get the rest from the other ranks with send/recv")
