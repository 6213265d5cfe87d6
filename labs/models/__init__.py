"""The models the course pipelines, how they are cut, their one-process reference, and what their activations cost.

* ``protocol``: ``PipelineModel``, what the runtime needs from a model (a ``typing.Protocol``);
* ``toy``: ``ToyModel`` (Linear + Tanh layers, MSE loss), ``loss_fn``; ``gpt``: ``TinyGPT`` for the capstone;
* ``cut``: ``split_layers``, ``check_microbatches``, ``split_batch``, ``parameter_name``;
* ``reference``: ``reference_gradients`` (the whole model in one process), ``max_grad_error``;
* ``memory``: ``saved_bytes``, ``checkpointed``, timing helpers (the closed forms are in ``labs.theory``).
"""
from __future__ import annotations

from .cut import ModelError, check_microbatches, parameter_name, split_batch, split_layers
from .gpt import TinyGPT
from .memory import Checkpointed, SavedBytes, checkpointed, saved_bytes, toy_stage
from .protocol import PipelineModel, check_model
from .reference import max_grad_error, reference_gradients
from .toy import ToyModel, loss_fn, seeded

__all__ = ["Checkpointed", "ModelError", "PipelineModel", "SavedBytes", "TinyGPT", "ToyModel", "check_microbatches",
           "check_model", "checkpointed", "loss_fn", "max_grad_error", "parameter_name", "reference_gradients",
           "saved_bytes", "seeded", "split_batch", "split_layers", "toy_stage"]
