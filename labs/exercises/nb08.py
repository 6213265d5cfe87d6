"""Notebook 08 (accumulation vs micro-batching): checks and graded score of ``accumulate_gradients``.

``accumulate_gradients(model, inputs, targets, M)`` -> {parameter name: gradient} of the batch's mean loss
(``labs.models.loss_fn``), computed over M equal micro-batches one after the other, as a pipeline does. The kernel side
(``run_accumulate``) builds a fresh toy model and batch from plain numbers, counts the batch sizes the model is called
with, and returns the gradients as plain lists. The grader computes the expected gradients in its own process: the
whole batch in one go, and for some cases the gradients of a real pipeline run.
"""
from __future__ import annotations

import torch
from torch import nn

from labs.exercises._common import check, exercise, gradient_tensors, score_cases
from labs.grading import Graded
from labs.models import ToyModel, loss_fn

__all__ = ["CHECK_CASES", "GRADED", "PIPELINE_CASES", "REFERENCES", "TOLERANCE", "check_accumulate_gradients",
           "problem", "run_accumulate", "score", "whole_batch_gradients"]

REFERENCES = ("labs.course.accumulation.accumulate_gradients", "labs.models.reference.reference_gradients")
TOLERANCE = 1e-5


def _setup(layers: int, width: int, batch_size: int, seed: int):
    toy = ToyModel(num_layers=layers, width=width, seed=seed)
    inputs, targets = toy.batch(batch_size, seed=seed + 1)
    return toy, nn.Sequential(*toy.layers()), inputs, targets


def run_accumulate(fn, layers: int, width: int, batch_size: int, M: int, seed: int):
    """Kernel side: the learner's gradients on a fresh model, and the batch sizes its forward saw."""
    _, model, inputs, targets = _setup(layers, width, batch_size, seed)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    grads = fn(model, inputs, targets, M)
    if isinstance(grads, dict):
        grads = {k: (v.detach().tolist() if isinstance(v, torch.Tensor) else v) for k, v in grads.items()}
    return {"grads": grads, "forward_batch_sizes": seen}


def whole_batch_gradients(layers: int, width: int, batch_size: int, seed: int) -> dict:
    """The batch's mean loss, differentiated in one go (no micro-batches)."""
    _, model, inputs, targets = _setup(layers, width, batch_size, seed)
    loss_fn(model(inputs), targets).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def _pipeline_gradients(layers: int, width: int, batch_size: int, M: int) -> dict:
    """A real GPipe run on min(layers, 4) ranks of the same model (seed 0) and batch (seed 1)."""
    from labs.pipeline import run_pipeline
    run = run_pipeline("gpipe", P=min(layers, 4), M=M, layers=layers, width=width,
                       batch_size=batch_size, pace_ms=None, warmup_steps=0, timeout_s=60)
    return run.grads


def _compare(where: str, got: dict, want: dict, M: int, against: str) -> str | None:
    if not isinstance(got, dict):
        return f"{where} returned {str(got)[:80]}, expected a dict {{parameter name: gradient}}"
    missing = sorted(set(want) - set(got))
    if missing:
        return f"{where}: no gradient for {missing[:3]} (name them as model.named_parameters() does)"
    tensors, problem = gradient_tensors(where, got, want)
    if problem:
        return problem
    worst, ratio = 0.0, None
    for name, reference in want.items():
        mine = tensors[name]
        error = float((mine - reference).abs().max())
        if error > worst:
            worst, ratio = error, float(mine.norm() / reference.norm()) if float(reference.norm()) else None
    if worst <= TOLERANCE:
        return None
    hint = ""
    if ratio is not None and M > 1 and abs(ratio - M) < 1e-3 * M:
        hint = f" - they are {M}x too large: divide each micro-batch's loss by M"
    return f"{where}: gradients differ from {against} by up to {worst:.2e}{hint}"


@exercise("accumulate_gradients")
def problem(case, output) -> str | None:
    layers, width, batch_size, M, seed = case
    where = f"accumulate_gradients on {layers} layers of width {width}, batch {batch_size}, M={M}"
    if not isinstance(output, dict) or "grads" not in output:
        return f"{where}: returned {str(output)[:80]}"
    sizes = output.get("forward_batch_sizes")
    if sizes != [batch_size // M] * M:
        return (f"{where}: the model was called on batches of {sizes}, expected M={M} calls on micro-batches of "
                f"{batch_size // M} (accumulate: one micro-batch after the other)")
    return _compare(where, output["grads"], whole_batch_gradients(layers, width, batch_size, seed), M,
                    "the whole batch's")


CHECK_CASES = [(4, 16, 32, 4, 0), (3, 8, 12, 3, 5), (2, 8, 8, 1, 2)]


def check_accumulate_gradients(fn) -> bool:
    return check(fn, CHECK_CASES, problem, "accumulate_gradients", REFERENCES[0], forbidden=REFERENCES,
                 call=run_accumulate,
                 passed=f"accumulate_gradients: {len(CHECK_CASES)} models, M micro-batches one after the other, "
                        f"the same gradients as the whole batch (within {TOLERANCE:g}) -> correct")


PIPELINE_CASES = [(4, 16, 32, 4, 0), (8, 32, 48, 6, 0)]  # seed 0: the model and batch run_pipeline uses


def _cases(rng) -> list[tuple]:
    cases = list(PIPELINE_CASES)
    while len(cases) < 10:
        M = rng.choice([1, 2, 3, 4, 8])
        cases.append((rng.randint(1, 5), rng.choice([4, 8, 16]), M * rng.randint(1, 6), M, rng.randint(0, 999)))
    return cases


def score(cases, outputs) -> tuple[float, str]:
    """Every case against the whole batch; the pipeline cases (if right so far) against a real pipeline's gradients."""
    fraction, message = score_cases(cases, outputs, problem)
    extra = []
    for case, output in zip(cases, outputs):
        if case in PIPELINE_CASES and problem(case, output) is None:
            layers, width, batch_size, M, _ = case
            wrong = _compare(f"accumulate_gradients, {layers} layers, M={M}", output["grads"],
                             _pipeline_gradients(layers, width, batch_size, M), M, "a real GPipe run's")
            if wrong:
                extra.append(wrong)
    if extra:
        return fraction * 0.5, message + "\n" + "\n".join(extra)
    return fraction, message


GRADED = [Graded(name="accumulate_gradients", points=2, cases=_cases, score=score,
                 run="labs.exercises.nb08:run_accumulate", forbidden=REFERENCES)]
