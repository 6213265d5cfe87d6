"""Notebook 00 (ranks and messages): the check and graded test of ``ring_pass``, and a reference to carry on with.

``ring_pass(rank, world_size)`` runs on every rank under ``labs.launch``: rank r holds
``torch.arange(4.) + 10 * r``, sends it to rank r+1 and returns what it received from rank r-1 (the ring wraps).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labs.grading import Graded
from labs.launch import LaunchTimeout, RankFailed, launch

RING_TIMEOUT = 15.0


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


def _problems(results, world_size: int) -> list[str]:
    problems = []
    for rank, got in enumerate(results):
        left = (rank - 1) % world_size
        want = ring_tensor(left)
        if not isinstance(got, torch.Tensor):
            problems.append(f"rank {rank} returned {type(got).__name__}, expected the tensor it received")
        elif got.shape != want.shape or not torch.equal(got.float(), want):
            problems.append(f"rank {rank} returned {got.tolist()}, expected {want.tolist()} (rank {left}'s tensor)")
    return problems


def _run(fn, world_size: int):
    """(results, None) or (None, why it failed)."""
    try:
        return launch(fn, world_size=world_size, args=(world_size,), timeout=RING_TIMEOUT), None
    except RankFailed as error:
        if "NotImplementedError" in error.worker_traceback:
            return None, "not implemented"
        return None, error.brief()
    except LaunchTimeout as error:
        return None, (f"the ring did not finish within {RING_TIMEOUT:g} s with {world_size} ranks: a deadlock? "
                      f"(every rank in a blocking send waits for a receive that no rank has posted yet)\n{error}")


def check_ring_pass(fn) -> bool:
    """Run ``fn`` on 4 ranks; say which rank got what."""
    results, why = _run(fn, 4)
    if why == "not implemented":
        print("not implemented yet: ring_pass (the notebook carries on with the reference ring pass)")
        return False
    if why:
        print(f"ring_pass failed: {why}")
        return False
    problems = _problems(results, 4)
    for problem in problems:
        print(problem)
    if not problems:
        print("ring_pass: every rank received its left neighbour's tensor (4 ranks) -> correct")
    return not problems


def _graded_ring_pass(fn) -> None:
    for world_size in (2, 3, 4, 5):
        results, why = _run(fn, world_size)
        if why == "not implemented":
            raise NotImplementedError("ring_pass")
        assert why is None, f"{world_size} ranks: {why}"
        problems = _problems(results, world_size)
        assert not problems, f"{world_size} ranks: " + "; ".join(problems)


GRADED = [Graded(name="ring_pass", points=2, test=_graded_ring_pass)]
