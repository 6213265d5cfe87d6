"""Notebook 06 (memory): checks and graded score of ``stage_activation_bytes``.

``stage_activation_bytes(layers, microbatch_size, width, last_stage=False)`` predicts the bytes autograd keeps for
one micro-batch in one stage of ``layers`` toy layers (Linear + Tanh, float32), counted as the runtime counts them:
each storage once, parameters excluded; the last stage also computes the loss against its target. The prediction is
compared with a measurement (``labs.models.memory.saved_bytes`` on the real layers), not with a formula. Graded: the kernel
returns the predictions; the grader measures in its own process. Calling ``labs.theory.toy_stage_bytes`` is not an
answer.
"""
from __future__ import annotations

import torch

from labs.exercises._common import check, exercise, score_cases
from labs.grading import Graded
from labs.models import loss_fn, saved_bytes, toy_stage

__all__ = ["FORBIDDEN", "GRADED", "REFERENCE", "bytes_problem", "call_with_keyword", "check_stage_activation_bytes",
           "measured_stage_bytes"]

REFERENCE = "labs.theory.toy_stage_bytes"
FORBIDDEN = (REFERENCE, "labs.exercises.nb06.measured_stage_bytes")  # the grader's measurement is no answer


def measured_stage_bytes(layers: int, microbatch_size: int, width: int, last_stage: bool = False) -> int:
    """Bytes saved by one micro-batch's forward through a real stage (with the loss on the last stage)."""
    stage = toy_stage(layers, width)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(microbatch_size, width, generator=generator).requires_grad_()
    target = torch.randn(microbatch_size, width, generator=generator)

    def forward(inputs):
        out = stage(inputs)
        return loss_fn(out, target) / 4 if last_stage else out  # the runtime divides the loss by M

    return saved_bytes(forward, x, exclude=list(stage.parameters()))[1]


def call_with_keyword(fn, layers: int, microbatch_size: int, width: int, last_stage: bool):
    """Kernel side: ``last_stage`` goes in by keyword, as the exercise's signature shows it."""
    return fn(layers, microbatch_size, width, last_stage=last_stage)


@exercise("stage_activation_bytes")
def bytes_problem(case, got) -> str | None:
    layers, microbatch_size, width, last_stage = case
    where = f"stage_activation_bytes({layers}, {microbatch_size}, {width}, last_stage={last_stage})"
    want = measured_stage_bytes(layers, microbatch_size, width, last_stage)
    if got != want or isinstance(got, bool):
        return f"{where} predicted {got!r} bytes, measured {want}"
    return None


def check_stage_activation_bytes(fn) -> bool:
    cases = [(2, 8, 64, False), (2, 8, 64, True), (3, 16, 32, False), (1, 4, 128, True)]
    return check(fn, cases, bytes_problem, "stage_activation_bytes", "labs.theory.toy_stage_bytes",
                 forbidden=FORBIDDEN, call=call_with_keyword,
                 passed=f"stage_activation_bytes: {len(cases)} predictions equal the measured bytes exactly -> correct")


def _cases(rng) -> list[tuple]:
    return [(layers, microbatch_size, width, last_stage) for layers in (1, 2, 5) for microbatch_size in (1, 3, 16)
            for width in (8, 48, 100) for last_stage in (False, True)]


GRADED = [Graded(name="stage_activation_bytes", points=2, cases=_cases,
                 score=lambda cases, outputs: score_cases(cases, outputs, bytes_problem),
                 run="labs.exercises.nb06:call_with_keyword", forbidden=FORBIDDEN)]
