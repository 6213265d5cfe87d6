"""Notebook 00 (ranks and messages): the check and graded score of ``ring_pass``, a reference to carry on with, and
the notebook's verdicts.

``ring_pass(rank, world_size)`` runs on every rank under ``labs.launch``: rank r holds
``torch.arange(4.) + 10 * r``, sends it to rank r+1 and returns what it received from rank r-1 (the ring wraps).
Graded: the kernel runs the learner's ring on world sizes the grader draws (never the 4 ranks the notebook shows,
at least one odd size; 2 ranks cannot tell left from right) and returns what each rank received and how many
messages it posted (plain data); the grader compares with ``ring_tensor`` in its own process. A ring that computes
its neighbour's tensor locally, or receives from the right instead of the left, scores on no size above 2; calling
``reference_ring_pass`` is not an answer.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labs.exercises._common import check, exercise, score_cases
from labs.exercises._messages import Counted, silent_ranks
from labs.course.verdicts import case, verdict
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, launch

__all__ = ["GRADED", "REFERENCE", "RING_TIMEOUT", "SHOWN_WORLD_SIZES", "WRONG", "all_stuck_in", "check_ring_pass",
           "in_rank_order", "reference_ring_pass", "ring_cases", "ring_problem", "ring_tensor", "run_ring",
           "separate_processes", "starts_within", "stopped_cleanly"]

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


def _ring_report(rank: int, world_size: int, source: int) -> dict:
    return {"result": ring_tensor(source).tolist(), "sent": 1, "received": 1}


# Plausible wrong rings, as the reports the kernel would send back for a world size: declared to the degenerate-answer
# rule (a case all of them pass earns nothing) and scored by the tests.
WRONG = {"receives from the right neighbour": lambda n: [_ring_report(r, n, (r + 1) % n) for r in range(n)],
         "returns its own tensor": lambda n: [_ring_report(r, n, r) for r in range(n)],
         "computes the neighbour's tensor without a message":
             lambda n: [dict(_ring_report(r, n, (r - 1) % n), sent=0, received=0) for r in range(n)]}


@exercise("ring_pass", wrong=WRONG)
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


SHOWN_WORLD_SIZES = (4,)  # the visible check's size: never graded


def check_ring_pass(fn) -> bool:
    """Run ``fn`` on 4 ranks; say which rank got what."""
    return check(fn, [(n,) for n in SHOWN_WORLD_SIZES], ring_problem, "ring_pass", "the reference ring pass",
                 forbidden=(REFERENCE,), call=run_ring,
                 passed="ring_pass: every rank received its left neighbour's tensor (4 ranks) -> correct")


def ring_cases(rng) -> list[tuple]:
    """Three distinct world sizes from 2, 3, 5, 6, 7 (never the 4 shown): at least one odd, at least two of 3 or more
    (with 2 ranks the left and the right neighbour are the same rank)."""
    return [(n,) for n in rng.sample((2, 3, 5, 6, 7), 3)]


GRADED = [Graded(name="ring_pass", points=2, cases=ring_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, ring_problem),
                 run="labs.exercises.nb00:run_ring", forbidden=(REFERENCE,))]


# ---------------------------------------------------------------- the notebook's verdicts
@verdict(holds=[case([0, 1, 2, 3])], fails=[case([1, 0, 3, 2], why="results in the order the ranks finished")])
def in_rank_order(ranks) -> bool:
    """The results' ranks are 0, 1, 2, ... in that order."""
    return list(ranks) == list(range(len(ranks)))


@verdict(holds=[case([101, 102, 103, 104], 100, 4)],
         fails=[case([101, 101, 102, 103], 100, 4, why="two ranks in one process (threads, not processes)"),
                case([100, 102, 103, 104], 100, 4, why="rank 0 ran inside the notebook's own process")])
def separate_processes(pids, notebook_pid: int, world_size: int) -> bool:
    """``world_size`` different process ids, none of them the notebook's."""
    return len(set(pids)) == world_size and notebook_pid not in set(pids)


@verdict(holds=[case(0.065, 1.0)], fails=[case(3.1, 1.0, why="spawn: every rank imports torch afresh")])
def starts_within(launch_s: float, limit_s: float) -> bool:
    """A launch took less than ``limit_s`` seconds."""
    return launch_s < limit_s


@verdict(holds=[case(["in dist.send of 4 bytes to rank 1", "in dist.send of 4 bytes to rank 2"], "in dist.send")],
         fails=[case(["in dist.send of 4 bytes to rank 1", "in dist.recv from rank 0"], "in dist.send",
                     why="rank 1 got past its send: a backend that buffers small messages"),
                case(["in dist.send of 4 bytes to rank 1", None], "in dist.send", why="a rank that never reported")])
def all_stuck_in(progress, prefix: str) -> bool:
    """Every rank's last report (``LaunchTimeout.progress``) starts with ``prefix``."""
    return bool(progress) and all((report or "").startswith(prefix) for report in progress)


@verdict(holds=[case(2.1, 30.0, [])],
         fails=[case(1800.0, 30.0, [], why="gloo's 30-minute default timeout"),
                case(2.1, 30.0, ["labs-rank-2"], why="a rank left running after the error")])
def stopped_cleanly(elapsed_s: float, limit_s: float, leftover) -> bool:
    """The notebook had control back within ``limit_s`` seconds and no rank process (``leftover``: names of the
    child processes still alive) is left."""
    return elapsed_s < limit_s and not list(leftover)
