"""A model whose declared boundary shape is not what a stage sends: a clear ModelError naming the stage, the shape
it produced and the shape the next stage expects, before any process starts, and on the sending rank before the
tensor travels (where only the data shows it); a truthful model runs (negative control)."""
import time
from dataclasses import dataclass

import pytest
import torch

import labs
from labs import ModelError, ToyModel, run_pipeline
from labs.runtime import RankFailed

QUICK = dict(P=2, M=2, layers=4, batch_size=4, pace_ms=None, steps=1, warmup_steps=0, memory=False)


@dataclass(frozen=True)
class Misdeclared(ToyModel):
    """The toy model, declaring ``factor`` times its real width at every boundary."""

    factor: float = 2.0

    def boundary_shape(self, microbatch_size):
        return (microbatch_size, int(self.width * self.factor))


class Widens(torch.nn.Module):
    """Pads its input with a column of zeros from its second call on (a shape that the data decides: micro-batch 0
    passes, micro-batch 1 does not)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.cat([x, torch.zeros(x.shape[0], 1)], dim=1) if self.calls > 1 else x


@dataclass(frozen=True)
class DataDependent(ToyModel):
    def layers(self):
        layers = super().layers()
        return layers[:1] + [torch.nn.Sequential(layers[1], Widens())] + layers[2:]


@pytest.mark.parametrize("factor,expected", [(2.0, "(2, 16)"), (0.5, "(2, 4)")])
def test_a_wrong_declaration_is_refused_before_any_process_starts(monkeypatch, factor, expected):
    monkeypatch.setattr(labs.pipeline, "launch", lambda *a, **k: pytest.fail("a process was about to start"))
    with pytest.raises(ModelError) as error:
        run_pipeline("1f1b", model=Misdeclared(num_layers=4, width=8, factor=factor), **QUICK)
    text = str(error.value)
    assert f"stage 0 (run in this process before launch) produced an activation of shape (2, 8)" in text, text
    assert f"but stage 1 expects {expected} (torch.float32), the model's boundary_shape(2)" in text, text


@pytest.mark.parametrize("transport", ["tagged", "in_order"])
@pytest.mark.parametrize("factor,expected", [(2.0, "(2, 16)"), (0.5, "(2, 4)")])
def test_the_sending_rank_names_stage_and_shapes_before_the_tensor_travels(monkeypatch, transport, factor, expected):
    monkeypatch.setattr(labs.pipeline, "check_boundaries", lambda *args: None)  # as under torchrun: no parent check
    started = time.perf_counter()
    with pytest.raises(RankFailed) as error:
        run_pipeline("1f1b", model=Misdeclared(num_layers=4, width=8, factor=factor), transport=transport,
                     timeout_s=60, **QUICK)
    assert time.perf_counter() - started < 20
    assert error.value.rank == 0
    assert (f"ModelError: stage 0 (rank 0) produced an activation of shape (2, 8) (torch.float32) for micro-batch 0, "
            f"but stage 1 expects {expected}") in error.value.exception, error.value.exception


def test_a_shape_that_depends_on_the_data_is_caught_by_the_sender():
    """Micro-batch 0 passes the parent's check; a later one is wider, and its sender says so."""
    with pytest.raises(RankFailed) as error:
        run_pipeline("gpipe", model=DataDependent(num_layers=4, width=8), **{**QUICK, "M": 4, "batch_size": 8})
    assert ("stage 0 (rank 0) produced an activation of shape (2, 9) (torch.float32) for micro-batch 1, but stage 1 "
            "expects (2, 8)") in error.value.exception, error.value.exception


def test_a_truthful_model_runs_exactly():
    run = run_pipeline("1f1b", model=Misdeclared(num_layers=4, width=8, factor=1.0), transport="in_order", **QUICK)
    assert run.max_grad_error <= 1e-5
