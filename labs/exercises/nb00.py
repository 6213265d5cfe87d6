"""Notebook 00 (ranks and messages): the check and graded score of ``ring_pass``, and a reference to carry on with.

``ring_pass(rank, world_size)`` runs on every rank under ``labs.launch``: rank r holds
``torch.arange(4.) + 10 * r``, sends it to rank r+1 and returns what it received from rank r-1 (the ring wraps).
Graded: the kernel runs the learner's ring on the grader's world sizes and returns what each rank received (plain
lists); the grader compares with ``ring_tensor`` in its own process. Calling ``reference_ring_pass`` is not an answer.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labs.exercises._common import check, exercise, score_cases
from labs.exercises._messages import Counted, silent_ranks
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, launch

__all__ = ["GRADED", "REFERENCE", "RING_TIMEOUT", "check_ring_pass", "reference_ring_pass", "ring_problem",
           "ring_tensor", "run_ring"]

RING_TIMEOUT = 15.0
REFERENCE = "labs.exercises.nb00.reference_ring_pass"


def ring_tensor(rank: int) -> torch.Tensor:
    """What rank ``rank`` holds before the ring pass."""
    return torch.arange(4, dtype=torch.float32) + 10 * rank


def reference_ring_pass(rank: int, world_size: int) -> torch.Tensor:
    """The course's ring pass: post the receive and the send together, so no rank waits on another's send."""
    mine = ring_tensor(rank)
    received = torch.empty_like(mine)
    requests = [dist.irecv(received, src=(rank - 1) % world_size), dist.isend(mine, dst=(rank + 1) % world_size)]
    for request in requests:
        request.wait()
    return received


def run_ring(fn, world_size: int) -> list:
    """Kernel side: per rank, what ``fn`` returned and how many messages it sent and received (a deadlock becomes a
    clear TimeoutError)."""
    try:
        return launch(Counted(fn), world_size=world_size, args=(world_size,), timeout_s=RING_TIMEOUT)
    except LaunchTimeout as error:
        raise TimeoutError(f"the ring did not finish within {RING_TIMEOUT:g} s: a deadlock? (every rank in a blocking "
                           f"send waits for a receive that no rank has posted yet)\n{error}") from None


@exercise("ring_pass")
def ring_problem(case, results) -> str | None:
    (world_size,) = case
    if not isinstance(results, list) or len(results) != world_size:
        return f"{world_size} ranks: expected one result per rank, got {str(results)[:200]}"
    problems = []
    for rank, report in enumerate(results):
        got = report.get("result") if isinstance(report, dict) else report
        left = (rank - 1) % world_size
        want = ring_tensor(left).tolist()
        if not isinstance(got, list):
            problems.append(f"rank {rank} returned {str(got)[:80]}, expected the tensor it received")
        elif got != want:
            problems.append(f"rank {rank} returned {got}, expected {want} (rank {left}'s tensor)")
    quiet = silent_ranks(results)
    if quiet and not problems:
        problems.append(quiet)
    return f"{world_size} ranks: " + "; ".join(problems) if problems else None


def check_ring_pass(fn) -> bool:
    """Run ``fn`` on 4 ranks; say which rank got what."""
    return check(fn, [(4,)], ring_problem, "ring_pass", "the reference ring pass", forbidden=(REFERENCE,),
                 call=run_ring, passed="ring_pass: every rank received its left neighbour's tensor (4 ranks) -> correct")


GRADED = [Graded(name="ring_pass", points=2, cases=lambda rng: [(n,) for n in (3, 2, 4, 5)],
                 score=lambda cases, outputs: score_cases(cases, outputs, ring_problem),
                 run="labs.exercises.nb00:run_ring", forbidden=(REFERENCE,))]
