"""Notebook 01 (the naive pipeline): checks and graded scores of ``split_stages`` and ``stage_step``, and the
notebook's verdicts.

* ``split_stages(num_layers, num_stages)`` -> list of ``range``: contiguous, in order, every layer once, sizes
  differing by at most one, the earlier stages taking the extra layers (what ``labs.split_layers`` returns).
* ``stage_step(rank, world_size, model, batch_size)`` runs on every rank under ``labs.launch``: forward of the whole
  batch through this rank's block of layers (receiving from rank-1, sending to rank+1), the loss on the last rank,
  then the backward in reverse; returns ``{labs.models.parameter_name(layer, name): grad}`` for its own layers.

Graded: the kernel returns ``split_stages``'s ranges as lists, and the gradients of a real run of ``stage_step`` on
the grader's (world size, layers, batch, seed) as nested lists; the grader compares them with ``labs.split_layers``
and with one process's gradients, computed in its own process. Calling the reference is not an answer.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, gradient_tensors, score_cases
from labs.exercises._messages import Counted, silent_ranks
from labs.grading import Graded
from labs.runtime.launcher import LaunchTimeout, launch
from labs.models import ToyModel, loss_fn, parameter_name, reference_gradients, split_layers

__all__ = ["GRADED", "SPLIT_REFERENCE", "STEP_REFERENCE", "STEP_TIMEOUT", "TOLERANCE", "check_split_stages",
           "check_stage_step", "held_longest_first", "one_rank_at_a_time", "reference_stage_step", "run_stage_step",
           "same_per_rank", "split_problem", "step_problem"]

STEP_TIMEOUT = 20.0
TOLERANCE = 1e-5
SPLIT_REFERENCE = "labs.models.cut.split_layers"
STEP_REFERENCE = "labs.exercises.nb01.reference_stage_step"


# ---------------------------------------------------------------- exercise 1: split_stages
def _show(blocks) -> str:
    return "[" + ", ".join(f"range({b[0]}, {b[-1] + 1})" if b and b == list(range(b[0], b[-1] + 1)) else repr(b)
                           for b in blocks) + "]"


def _one_stage(case) -> list:
    """The declared degenerate answer: every layer on one stage (right only when there is one stage)."""
    return [list(range(case[0]))]


@exercise("split_stages", trivial=_one_stage)
def split_problem(case, got) -> str | None:
    num_layers, num_stages = case
    want = [list(r) for r in split_layers(num_layers, num_stages)]
    if not isinstance(got, list) or not all(isinstance(b, list) for b in got):
        return f"split_stages({num_layers}, {num_stages}) returned {str(got)[:200]}, expected a list of ranges"
    if got != want:
        return f"split_stages({num_layers}, {num_stages}) returned {_show(got)}, expected {_show(want)}"
    return None


def check_split_stages(fn) -> bool:
    cases = [(8, 4), (10, 4), (7, 3), (4, 4), (5, 1)]
    return check(fn, cases, split_problem, "split_stages", "labs.split_layers", forbidden=(SPLIT_REFERENCE,),
                 passed=f"split_stages: {len(cases)} cases match labs.split_layers -> correct")


def _split_cases(rng) -> list[tuple]:
    grid = [(num_layers, num_stages) for num_layers in range(1, 25) for num_stages in range(1, num_layers + 1)]
    hidden = [(layers, rng.randint(1, min(layers, 97))) for layers in (rng.randint(25, 5000) for _ in range(10))]
    return grid + hidden  # hidden cases too large for a table of answers made before grading


# ---------------------------------------------------------------- exercise 2: stage_step
def reference_stage_step(rank: int, world_size: int, model: ToyModel, batch_size: int) -> dict:
    """The course's stage: forward (receive, compute, send), then backward (receive, compute, send back)."""
    blocks = split_layers(model.num_layers, world_size)
    layers = model.layers()
    mine = [layers[i] for i in blocks[rank]]
    stage = torch.nn.Sequential(*mine)
    inputs, targets = model.batch(batch_size)
    first, last = rank == 0, rank == world_size - 1
    if first:
        x = inputs
    else:
        x = torch.empty(batch_size, model.width)
        dist.recv(x, src=rank - 1)
        x.requires_grad_()
    out = stage(x)
    if last:
        loss_fn(out, targets).backward()
    else:
        dist.send(out.detach(), dst=rank + 1)
        grad = torch.empty_like(out)
        dist.recv(grad, src=rank + 1)
        out.backward(grad)
    if not first:
        dist.send(x.grad, dst=rank - 1)
    return {parameter_name(i, name): p.grad for i, layer in zip(blocks[rank], mine)
            for name, p in layer.named_parameters()}


def run_stage_step(fn, world_size: int, layers: int, batch_size: int, seed: int, width: int = 32) -> dict:
    """Kernel side: run ``fn`` on ``world_size`` ranks on the described model: every rank's gradients, merged, and
    how many messages each rank sent and received."""
    model = ToyModel(num_layers=layers, width=width, seed=seed)
    try:
        reports = launch(Counted(fn), world_size=world_size, args=(world_size, model, batch_size),
                         timeout_s=STEP_TIMEOUT)
    except LaunchTimeout as error:
        raise TimeoutError(f"the ranks did not finish within {STEP_TIMEOUT:g} s (a rank waits for a message that "
                           f"is never sent?)\n{error}") from None
    grads = {}
    for rank, report in enumerate(reports):
        if not isinstance(report["result"], dict):
            raise TypeError(f"rank {rank} returned {type(report['result']).__name__}, expected a dict of gradients")
        grads.update(report["result"])
    return {"grads": grads, "messages": [{"sent": r["sent"], "received": r["received"]} for r in reports]}


@exercise("stage_step")
def step_problem(case, output) -> str | None:
    world_size, layers, batch_size, seed = case[:4]
    width = case[4] if len(case) > 4 else 32
    where = f"{world_size} ranks, {layers} layers, batch {batch_size}"
    grads = output.get("grads") if isinstance(output, dict) else None
    if not isinstance(grads, dict):
        return f"{where}: expected a dict of gradients, got {str(output)[:200]}"
    _, reference = reference_gradients(ToyModel(num_layers=layers, width=width, seed=seed), batch_size)
    missing = sorted(set(reference) - set(grads))
    if missing:
        return f"{where}: no gradient for {missing[:4]}{' ...' if len(missing) > 4 else ''}"
    if any(grads[k] is None for k in reference):
        return f"{where}: some gradients are None (did backward reach every layer?)"
    tensors, problem = gradient_tensors(where, grads, reference)
    if problem:
        return problem
    errors = {name: float((tensors[name] - want).abs().max()) for name, want in reference.items()}
    worst = max(errors, key=errors.get)
    if errors[worst] > TOLERANCE:
        return f"{where}: max |pipeline - one process| = {errors[worst]:.1e} > {TOLERANCE:g} (worst: parameter {worst})"
    quiet = silent_ranks(output.get("messages", []) if world_size > 1 else [])
    return f"{where}: {quiet}" if quiet else None


def check_stage_step(fn) -> bool:
    return check(fn, [(4, 8, 16, 0, 64)], step_problem, "stage_step", "the reference stage",
                 forbidden=(STEP_REFERENCE,), call=run_stage_step,
                 passed=f"stage_step: 4 ranks' gradients equal the one-process model's (max error <= {TOLERANCE:g}) "
                        f"-> correct")


def _step_cases(rng) -> list[tuple]:
    return [(2, 4, 8, rng.randrange(1000)), (3, 7, 12, rng.randrange(1000)), (4, 8, 16, rng.randrange(1000)),
            (4, 6, 5, rng.randrange(1000))]


GRADED = [Graded(name="split_stages", points=1, cases=_split_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, split_problem), forbidden=(SPLIT_REFERENCE,)),
          Graded(name="stage_step", points=3, cases=_step_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, step_problem),
                 run="labs.exercises.nb01:run_stage_step", forbidden=(STEP_REFERENCE,))]


# ---------------------------------------------------------------- the notebook's verdicts
def _intervals(schedule_name: str, M: int) -> list:
    from labs.schedules import make  # the planted cases are simulated on demand, never on import
    from labs.timeline import Costs, simulate
    trace = simulate(make(schedule_name, 4, M), Costs(0.02, 0.04))
    return [(rank, e.start_s, e.end_s) for rank, events in enumerate(trace.events) for e in events]


@verdict(holds=lambda: [case(_intervals("naive", 1), 0.005)],
         fails=lambda: [case(_intervals("gpipe", 2), 0.005, why="GPipe with 2 micro-batches: ranks work at once")])
def one_rank_at_a_time(intervals, tolerance_s: float) -> bool:
    """No two ranks' actions overlap by more than ``tolerance_s`` seconds (``intervals``: (rank, start_s, end_s))."""
    for i, (rank_a, start_a, end_a) in enumerate(intervals):
        for rank_b, start_b, end_b in intervals[i + 1:]:
            if rank_a != rank_b and min(end_a, end_b) - max(start_a, start_b) > tolerance_s:
                return False
    return True


@verdict(holds=[case([49152, 49152, 49152, 65536], [49152, 49152, 49152, 65536])],
         fails=[case([49152, 49152, 49152, 65536], [49152, 49152, 49152, 49152],
                     why="a prediction that forgets the loss's target on the last rank"),
                case([49152, 49152, 49152], [49152, 49152, 49152, 65536], why="a rank missing")])
def same_per_rank(measured, predicted) -> bool:
    """Every rank's measured number equals its prediction (both lists, one entry per rank)."""
    return list(measured) == list(predicted)


@verdict(holds=[case([0.47, 0.35, 0.23, 0.11], 0.49)],
         fails=[case([0.11, 0.23, 0.35, 0.47], 0.49, why="the order of the backwards reversed"),
                case([0.30, 0.25, 0.20, 0.11], 0.49, why="rank 0 not holding them for most of the step")])
def held_longest_first(held_s, step_s: float) -> bool:
    """Rank 0 holds its activations longest and for most of the step (over 0.8 of ``step_s``), each later rank
    shorter: ``held_s[r]`` is rank r's time from the end of its forward to the end of its backward."""
    return list(held_s) == sorted(held_s, reverse=True) and held_s[0] > 0.8 * step_s
