"""What the launcher raises when ranks fail or hang, with messages that say what to change.

``RankFailed``: a rank raised (or died); it carries the rank, the worker's traceback, its whole exception and a hint
for the mistakes learners make most. ``LaunchTimeout``: the ranks did not finish in time; it lists what each rank
last reported through ``labs.report``. ``labs.launch`` raises both; notebooks' checks print ``error.brief()``. Both
are ``labs.errors.RunFailure``s.
"""
from __future__ import annotations

from ..errors import RunFailure

__all__ = ["LaunchTimeout", "RankFailed"]


class RankFailed(RunFailure, RuntimeError):
    """A worker raised; ``rank`` and the worker's ``worker_traceback`` say where and why.

    ``exception`` is the exception itself, whole (type and every line of its message); ``hint`` says what to change
    for the mistakes learners make most (a gradient that is None, a send or receive without a partner).
    """

    def __init__(self, rank: int, worker_traceback: str, output: str = "", exception: str = "",
                 finished: list | tuple = ()):
        self.rank, self.worker_traceback, self.output = rank, worker_traceback, output
        self.exception = (exception or _exception_of(worker_traceback)).strip()
        self.finished = list(finished)
        self.hint = _hint(rank, worker_traceback, self.finished)
        extra = f"\n--- what rank {rank} printed ---\n{output}" if output.strip() else ""
        hint = f"\n{self.hint}" if self.hint else ""
        super().__init__(f"rank {rank} failed:\n{worker_traceback.rstrip()}{hint}{extra}")

    def brief(self) -> str:
        """One paragraph for a check's feedback: the rank, the whole exception, the hint."""
        return f"rank {self.rank} raised {self.exception}" + (f"\n{self.hint}" if self.hint else "")


def _exception_of(worker_traceback: str) -> str:
    """The last exception of a formatted traceback, all its lines (what follows the last ``File`` frame)."""
    lines = worker_traceback.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    start = frames[-1] + 1 if frames else 0
    while start < len(lines) and lines[start].startswith(" "):
        start += 1
    return "\n".join(lines[start:]) if start < len(lines) else worker_traceback.strip()


def _hint(rank: int, worker_traceback: str, finished: list) -> str:
    text = worker_traceback
    if "NoneType" in text and (".grad" in text or "Expected parameter `tensor`" in text):
        return ("hint: a tensor is None where a tensor was expected; most often x.grad after the backward, so there was no gradient to send: the tensor this rank "
                "received did not require grad. Call x.requires_grad_() on the received activation before the "
                "stage runs on it, so that autograd keeps its gradient.")
    if "Connection closed by peer" in text or "Connection reset by peer" in text:
        others = (f"rank(s) {', '.join(map(str, finished))} had already returned and exited" if finished
                  else "another rank had already ended")
        return (f"hint: an unmatched send/recv, not a network fault: rank {rank} was still sending to or receiving "
                f"from a rank that was gone ({others}). Every dist.send needs a dist.recv on the other rank, and "
                f"every dist.recv a dist.send, between the same pair of ranks.")
    return ""


class LaunchTimeout(RunFailure, TimeoutError):
    """The ranks did not all finish in ``timeout_s`` seconds; ``progress`` holds what each rank last reported."""

    def __init__(self, timeout_s: float, progress: list[str]):
        self.progress = progress
        lines = "\n".join(f"  rank {r}: {p or 'reported nothing (stuck before its first action?)'}"
                          for r, p in enumerate(progress))
        super().__init__(f"the ranks did not finish within {timeout_s:g} s; each rank's last report:\n{lines}")
