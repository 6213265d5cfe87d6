"""Notebook 01 (the naive pipeline): checks and graded tests of ``split_stages`` and ``stage_step``.

* ``split_stages(num_layers, num_stages)`` -> list of ``range``: contiguous, in order, every layer once, sizes
  differing by at most one, the earlier stages taking the extra layers (what ``labs.split_layers`` returns).
* ``stage_step(rank, world_size, model, batch_size)`` runs on every rank under ``labs.launch``: forward of the whole
  batch through this rank's block of layers (receiving from rank-1, sending to rank+1), the loss on the last rank,
  then the backward in reverse; returns ``{labs.model.parameter_name(layer, name): grad}`` for its own layers.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from labs.exercises._common import Answer, collect, report
from labs.grading import Graded
from labs.launch import LaunchTimeout, RankFailed, launch
from labs.model import ToyModel, loss_fn, max_grad_error, parameter_name, reference_gradients, split_layers

STEP_TIMEOUT = 20.0
TOLERANCE = 1e-5


# ---------------------------------------------------------------- exercise 1: split_stages
def _split_problem(fn, num_layers: int, num_stages: int) -> str | None:
    want = split_layers(num_layers, num_stages)
    answer = Answer(fn, f"split_stages({num_layers}, {num_stages})", num_layers, num_stages)
    if answer.problem:
        return answer.problem
    got = answer.value
    try:
        got_list = [range(r.start, r.stop) if isinstance(r, range) else r for r in got]
    except TypeError:
        return f"split_stages({num_layers}, {num_stages}) returned {got!r}, expected a list of ranges"
    if got_list != want:
        return (f"split_stages({num_layers}, {num_stages}) returned [{', '.join(map(_show, got_list))}], "
                f"expected [{', '.join(map(_show, want))}]")
    return None


def _show(r) -> str:
    return f"range({r.start}, {r.stop})" if isinstance(r, range) else repr(r)


def check_split_stages(fn) -> bool:
    cases = [(8, 4), (10, 4), (7, 3), (4, 4), (5, 1)]
    problems = collect(lambda *case: _split_problem(fn, *case), cases, "split_stages", "labs.split_layers")
    return problems is not None and report(problems, f"split_stages: {len(cases)} cases match labs.split_layers -> correct")


def _graded_split_stages(fn) -> None:
    for num_layers in range(1, 25):
        for num_stages in range(1, num_layers + 1):
            problem = _split_problem(fn, num_layers, num_stages)
            assert problem is None, problem


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


def _step_problem(fn, world_size: int, model: ToyModel, batch_size: int) -> str | None:
    where = f"{world_size} ranks, {model.num_layers} layers, batch {batch_size}"
    try:
        results = launch(fn, world_size=world_size, args=(world_size, model, batch_size), timeout=STEP_TIMEOUT)
    except RankFailed as error:
        if "NotImplementedError" in error.worker_traceback:
            raise NotImplementedError("stage_step") from None
        return f"{where}: {error.brief()}"
    except LaunchTimeout as error:
        return (f"{where}: the ranks did not finish within {STEP_TIMEOUT:g} s (a rank waits for a message that is "
                f"never sent?)\n{error}")
    grads = {}
    for rank, result in enumerate(results):
        if not isinstance(result, dict):
            return f"{where}: rank {rank} returned {type(result).__name__}, expected a dict of gradients"
        grads.update(result)
    _, reference = reference_gradients(model, batch_size)
    missing = sorted(set(reference) - set(grads))
    if missing:
        return f"{where}: no gradient for {missing[:4]}{' ...' if len(missing) > 4 else ''}"
    if any(g is None for g in grads.values()):
        return f"{where}: some gradients are None (did backward reach every layer?)"
    error = max_grad_error({k: grads[k] for k in reference}, reference)
    if error > TOLERANCE:
        worst = max(reference, key=lambda k: float((grads[k] - reference[k]).abs().max()))
        return f"{where}: max |pipeline - one process| = {error:.1e} > {TOLERANCE:g} (worst: parameter {worst})"
    return None


def check_stage_step(fn) -> bool:
    try:
        problem = _step_problem(fn, 4, ToyModel(num_layers=8, width=64), 16)
    except NotImplementedError:
        print("not implemented yet: stage_step (the notebook carries on with the reference stage)")
        return False
    if problem:
        print(problem)
        return False
    print(f"stage_step: 4 ranks' gradients equal the one-process model's (max error <= {TOLERANCE:g}) -> correct")
    return True


def _graded_stage_step(fn) -> None:
    for world_size, layers, batch in ((2, 4, 8), (3, 7, 12), (4, 8, 16), (4, 6, 5)):
        problem = _step_problem(fn, world_size, ToyModel(num_layers=layers, width=32, seed=world_size), batch)
        assert problem is None, problem


GRADED = [Graded(name="split_stages", points=1, test=_graded_split_stages),
          Graded(name="stage_step", points=3, test=_graded_stage_step)]
