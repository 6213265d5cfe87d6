"""The one-process reference a pipeline's gradients are checked against.

``reference_gradients(model, batch_size)`` runs the whole model on the whole batch in one process, with the model's
own layers, batch and loss (any ``labs.models.PipelineModel``: the toy model, the tiny GPT, the MLP model).
"""
from __future__ import annotations

from torch import nn

__all__ = ["max_grad_error", "reference_gradients"]


def reference_gradients(model, batch_size: int) -> tuple[float, dict]:
    """(loss, {parameter name: gradient}) of the whole model on the whole batch, in one process, with no pipeline.

    The pipeline computes ``model.loss`` per micro-batch, divides by M and accumulates the gradients; with equal
    micro-batches and a mean loss that is the gradient of the mean loss over the batch, computed here in one go.
    Parameter names are ``labs.models.cut.parameter_name``'s (``'3.0.weight'``: layer 3's first module's weight).
    """
    layers = nn.Sequential(*model.layers())
    inputs, targets = model.batch(batch_size)
    loss = model.loss(layers(inputs), targets)
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in layers.named_parameters()}


def max_grad_error(pipeline_grads: dict, reference: dict) -> float:
    """Largest absolute difference between two sets of gradients ({name: tensor}).

    Raises AssertionError naming parameters present in only one of them.
    """
    missing = set(reference) ^ set(pipeline_grads)
    if missing:
        raise AssertionError(f"gradients missing for parameters: {sorted(missing)[:5]}")
    return max(float((pipeline_grads[k] - reference[k]).abs().max()) for k in reference)
