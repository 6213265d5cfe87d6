"""Notebook 08 (accumulation vs micro-batching): the seed notes' pipeline stage, fixed (``pipeline_stage``), and the
verdicts the notebook prints, each registered with the planted inputs that make it False.

``pipeline_stage(rank, world_size, stage, inputs, targets, M, microbatch_shape)`` runs on every rank under
``labs.launch``: GPipe over M micro-batches on this rank's ``stage`` (an ``nn.Sequential`` of its layers), all forwards
then all backwards; ``inputs`` on rank 0 and ``targets`` on the last rank (None elsewhere); every boundary tensor has
``microbatch_shape``. It returns {name: gradient} for ``stage.named_parameters()``, equal to the whole batch's
mean-loss gradient in one process. The notes' version (section 9 of the seed notes) fails; the learner finds why.

Kernel side, ``run_pipeline_stage`` runs the learner's function on real ranks and counts the messages each rank
posts (a rank that returns right gradients without receiving and sending is refused); the grader compares with one
process in its own process. A case is (ranks, layers, width, batch, M, seed).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from labs.course.verdicts import case, verdict
from labs.exercises._common import check, exercise, gradient_tensors, score_cases
from labs.exercises._messages import Counted, silent_ranks
from labs.grading import Graded
from labs.models import ToyModel, loss_fn, parameter_name, split_layers
from labs.runtime.launcher import LaunchTimeout, launch

__all__ = ["CHECK_CASES", "GRADED", "REFERENCE", "STEP_TIMEOUT", "TOLERANCE", "best_m_inside", "bit_for_bit",
           "check_pipeline_stage", "expected", "mean_of_means_is_batch_mean", "problem", "reference_pipeline_stage",
           "run_pipeline_stage", "same_counts", "small_microbatches_cost_more", "speedup_matches"]

REFERENCE = "labs.exercises.nb08.reference_pipeline_stage"
FORBIDDEN = (REFERENCE, "labs.exercises.nb01.reference_stage_step", "labs.course.accumulation.accumulate_gradients",
             "labs.models.reference.reference_gradients", "labs.pipeline.run_pipeline", "labs.runtime.step.run_rank")
STEP_TIMEOUT = 20.0
TOLERANCE = 1e-5


def reference_pipeline_stage(rank, world_size, stage, inputs, targets, M, microbatch_shape) -> dict:
    """GPipe on real ranks, done right: received inputs require grad, input gradients go back, the loss / M."""
    first, last = rank == 0, rank == world_size - 1
    micro_inputs = inputs.chunk(M) if first else [None] * M
    micro_targets = targets.chunk(M) if last else [None] * M
    received, outputs = [], []
    for m in range(M):
        x = micro_inputs[m]
        if not first:
            x = torch.empty(microbatch_shape)
            dist.recv(x, src=rank - 1)
            x.requires_grad_()
        out = stage(x)
        if not last:
            dist.send(out.detach(), dst=rank + 1)
        received.append(x)
        outputs.append(out)
    for m in range(M):
        if last:
            (loss_fn(outputs[m], micro_targets[m]) / M).backward()
        else:
            grad = torch.empty(microbatch_shape)
            dist.recv(grad, src=rank + 1)
            outputs[m].backward(grad)
        if not first:
            dist.send(received[m].grad, dst=rank - 1)
    return {name: p.grad for name, p in stage.named_parameters()}


def _rank(rank, world_size, fn, layers, width, batch, M, seed):
    model = ToyModel(num_layers=layers, width=width, seed=seed)
    blocks = split_layers(layers, world_size)
    every = model.layers()
    stage = nn.Sequential(*[every[i] for i in blocks[rank]])
    inputs, targets = model.batch(batch, seed=seed + 1)
    got = fn(rank, world_size, stage, inputs if rank == 0 else None, targets if rank == world_size - 1 else None, M,
             (batch // M, width))
    if not isinstance(got, dict):
        raise TypeError(f"rank {rank} returned {type(got).__name__}, expected a dict {{name: gradient}}")
    named = {}
    for name, _ in stage.named_parameters():  # "0.0.weight" in the stage -> the layer's name in the whole model
        position, _, rest = name.partition(".")
        value = got.get(name)
        named[parameter_name(blocks[rank][int(position)], rest)] = (
            value.detach().tolist() if isinstance(value, torch.Tensor) else value)
    return named


def run_pipeline_stage(fn, world_size: int, layers: int, width: int, batch: int, M: int, seed: int) -> dict:
    """Kernel side: ``fn`` on ``world_size`` real ranks; every rank's gradients (whole-model names, plain lists) and
    how many messages each rank sent and received. TimeoutError when the ranks hang."""
    try:
        reports = launch(Counted(_rank), world_size=world_size, args=(world_size, fn, layers, width, batch, M, seed),
                         timeout_s=STEP_TIMEOUT)
    except LaunchTimeout as error:
        raise TimeoutError(f"the ranks did not finish within {STEP_TIMEOUT:g} s: a rank waits for a message that is "
                           f"never sent\n{error}") from None
    grads = {}
    for report in reports:
        grads.update(report["result"])
    return {"grads": grads, "messages": [{"sent": r["sent"], "received": r["received"]} for r in reports]}


def expected(layers: int, width: int, batch: int, seed: int) -> dict:
    """One process, the whole batch, the mean loss: {whole-model parameter name: gradient}."""
    model = ToyModel(num_layers=layers, width=width, seed=seed)
    net = nn.Sequential(*model.layers())
    inputs, targets = model.batch(batch, seed=seed + 1)
    loss_fn(net(inputs), targets).backward()
    return {parameter_name(i, name): p.grad for i, layer in enumerate(net) for name, p in layer.named_parameters()}


def _unscaled(world_size, layers, width, batch, M, seed) -> dict:
    """What a right pipeline without the loss's 1/M returns (M x the gradients): the plausible mistake the M = 1 case
    cannot show, so that case is trivial (``labs.exercises._credit``)."""
    grads = {k: (M * v).tolist() for k, v in expected(layers, width, batch, seed).items()}
    return {"grads": grads, "messages": [{"sent": M, "received": M}] * world_size}


@exercise("pipeline_stage", wrong={"no 1/M on the loss": _unscaled})
def problem(case_, output) -> str | None:
    world_size, layers, width, batch, M, seed = case_
    where = f"pipeline_stage on {world_size} ranks, {layers} layers, M={M}"
    grads = output.get("grads") if isinstance(output, dict) else None
    if not isinstance(grads, dict):
        return f"{where}: {str(output)[:300]}"
    want = expected(layers, width, batch, seed)
    owner = {parameter_name(i, n): r for r, block in enumerate(split_layers(layers, world_size)) for i in block
             for n in ("0.weight", "0.bias")}
    missing = sorted((owner[k], k) for k in want if grads.get(k) is None)
    if missing:
        return f"{where}: rank {missing[0][0]} returned no gradient for {missing[0][1]}"
    tensors, wrong = gradient_tensors(where, grads, want)
    if wrong:
        return wrong
    worst: dict = {}
    for name, reference in want.items():
        error = float((tensors[name] - reference).abs().max())
        if error > TOLERANCE and error > worst.get(owner[name], (0.0, ""))[0]:
            worst[owner[name]] = (error, name)
    if worst:
        rank = min(worst)
        error, name = worst[rank]
        mine, reference = tensors[name], want[name]
        ratio = float(mine.norm() / reference.norm()) if float(reference.norm()) else 0.0
        symptom = ""
        if float(mine.abs().max()) == 0.0:
            symptom = " (they are all zero)"
        elif round(ratio) >= 2 and abs(ratio - round(ratio)) < 1e-3:
            symptom = f" (they are {round(ratio)}x one process's)"
        ranks = f"ranks {', '.join(map(str, sorted(worst)))}" if len(worst) > 1 else f"rank {rank}"
        return f"{where}: the gradients of {ranks} differ from one process by up to {error:.1e}{symptom}"
    quiet = silent_ranks(output.get("messages", []))
    return f"{where}: {quiet}" if quiet else None


CHECK_CASES = [(4, 8, 16, 48, 4, 0), (2, 4, 16, 8, 1, 3)]


def check_pipeline_stage(fn) -> bool:
    return check(fn, CHECK_CASES, problem, "pipeline_stage", "labs' reference stage", forbidden=FORBIDDEN,
                 call=run_pipeline_stage,
                 passed=f"pipeline_stage: {len(CHECK_CASES)} pipelines on real ranks, every rank's gradients equal one "
                        f"process's (within {TOLERANCE:g}) -> correct")


def _cases(rng) -> list[tuple]:
    cases = []
    for P, M in ((2, 3), (3, 2), (4, 4), (3, 4), (rng.choice([2, 3]), 1)):  # M = 1: the 1/M slip does not show
        width = rng.choice([8, 24])
        cases.append((P, 2 * P, width, M * rng.randint(2, 4), M, rng.randrange(1, 1000)))
    return cases


GRADED = [Graded(name="pipeline_stage", points=3, cases=_cases, forbidden=FORBIDDEN,
                 score=lambda cases, outputs: score_cases(cases, outputs, problem),
                 run="labs.exercises.nb08:run_pipeline_stage")]


# ---------------------------------------------------------------- the notebook's verdicts
@verdict(holds=[case([0.9, 1.1, 1.3, 0.7], 1.0)],
         fails=[case([1.0, 3.0], 2.5, why="micro-batches of 3 and 1 samples: the mean of means is not the batch mean"),
                case([0.9, 1.1, 1.3, 0.7], 4.0, why="the batch loss taken as the sum of the micro-batch losses")])
def mean_of_means_is_batch_mean(micro_losses: list, batch_loss: float, tolerance: float = 1e-6) -> bool:
    """The mean of the M micro-batch losses equals the batch's loss within ``tolerance``."""
    return abs(sum(micro_losses) / len(micro_losses) - batch_loss) <= tolerance


@verdict(holds=[case(0.0)], fails=[case(3.7e-9, why="the same sums added in another order (backwards reversed)"),
                                   case(float("nan"), why="a NaN gradient")])
def bit_for_bit(difference: float) -> bool:
    """The largest absolute difference between two sets of gradients is exactly 0."""
    return difference == 0.0


@verdict(holds=[case(2.83, 4, 8), case(2.75, 4, 8)],
         fails=[case(4.0, 4, 8, why="a speed-up of P: a pipeline without a bubble"),
                case(1.0, 4, 8, why="no speed-up: the stages ran one after the other")])
def speedup_matches(speedup: float, P: int, M: int, rel: float = 0.10) -> bool:
    """A measured speed-up of P ranks over one process within ``rel`` of P*M/(M+P-1) (equal stages, free link)."""
    theory = P * M / (M + P - 1)
    return abs(speedup - theory) <= rel * theory


@verdict(holds=[case([4, 3, 2, 1], [4, 3, 2, 1]), case([16384], [16384])],
         fails=[case([8, 8, 8, 8], [4, 3, 2, 1], why="GPipe's counts against 1F1B's P - r"),
                case([16384], [8192], why="rank 0's bytes predicted without the stage's input tensor")])
def same_counts(measured: list, expected: list) -> bool:
    """Counts (or bytes) per rank equal the expected ones, rank by rank."""
    return list(measured) == list(expected)


_EFFICIENT = {M: 0.0107 for M in (1, 2, 4, 8, 16, 32, 64)}  # a planted device: t(b) proportional to b
_MEASURED = {1: 0.0107, 2: 0.0117, 4: 0.0165, 8: 0.0160, 16: 0.0158, 32: 0.0237, 64: 0.0376}  # r16 E1, shared machine


@verdict(holds=[case(_MEASURED)], fails=[case(_EFFICIENT, why="a perfectly efficient device: t(b) proportional to b")])
def small_microbatches_cost_more(batch_times: dict, factor: float = 1.5) -> bool:
    """The whole batch computed as the most micro-batches ({M: seconds}) costs more than ``factor`` x in one piece."""
    return batch_times[max(batch_times)] > factor * batch_times[min(batch_times)]


@verdict(holds=[case(_MEASURED, 4)], fails=[case(_EFFICIENT, 4, why="a perfectly efficient device: more is better")])
def best_m_inside(batch_times: dict, P: int) -> bool:
    """The predicted step (M+P-1) * t(B/M), with t(B/M) = batch_times[M] / M, is shortest at neither end of the
    sweep of M (Narayanan et al. 2021, arXiv 2104.04473, section 3.4)."""
    step = {M: (M + P - 1) * t / M for M, t in batch_times.items()}
    best = min(step, key=step.get)
    return min(step) < best < max(step)
