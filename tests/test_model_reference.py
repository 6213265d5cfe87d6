"""Every reference a run is checked against uses the run's own model definition: its loss, its initialisation and its
data (issue: TinyGPT crashed the parent's gradient check, whose reference used the toy model's MSE). Real ranks,
unpaced, about a second each."""
import pytest
import torch
from torch.nn import functional as F

from labs import ToyModel, run_pipeline
from labs.models.gpt import TinyGPT
from labs.models.reference import max_grad_error, reference_gradients


class SmoothedGPT(TinyGPT):
    """The tiny GPT with label smoothing: a different loss on the same layers and data (the planted wrong reference)."""

    def loss(self, logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), label_smoothing=0.1)


class L1Toy(ToyModel):
    """The toy model with its own loss (mean absolute error) in place of MSE."""

    def loss(self, output, target):
        return (output - target).abs().mean()


@pytest.mark.parametrize("schedule,P,M,v", [("1f1b", 4, 4, 1), ("interleaved", 2, 4, 2)])
def test_a_model_with_its_own_loss_is_checked_against_its_own_reference(schedule, P, M, v):
    run = run_pipeline(schedule, P, M, v, model=TinyGPT(), batch_size=16, pace_ms=None)
    assert run.loss == pytest.approx(4.6787, abs=1e-3) and run.reference_loss == pytest.approx(run.loss, abs=1e-5)
    assert run.max_grad_error <= 1e-6, run.max_grad_error  # ~3e-8 (float32 sums in another order)
    # negative control: the same gradients against a reference with another loss (label smoothing) differ
    _, smoothed = reference_gradients(SmoothedGPT(), 16)
    assert max_grad_error(run.grads, smoothed) > 1e-3


def test_the_reference_uses_the_models_loss_seed_and_data():
    model = L1Toy(num_layers=4, width=16, seed=5)
    run = run_pipeline("gpipe", 2, 4, layers=4, width=16, batch_size=8, model=model, pace_ms=None)
    inputs, targets = model.batch(8)
    layers = torch.nn.Sequential(*model.layers())
    assert run.reference_loss == pytest.approx(float((layers(inputs) - targets).abs().mean().detach()), abs=1e-6)
    assert run.max_grad_error <= 1e-6
    # negative controls: another seed's weights, or the toy model's MSE, give gradients the check tells apart
    assert max_grad_error(run.grads, reference_gradients(L1Toy(4, 16, seed=0), 8)[1]) > 1e-3
    assert max_grad_error(run.grads, reference_gradients(ToyModel(4, 16, seed=5), 8)[1]) > 1e-3
