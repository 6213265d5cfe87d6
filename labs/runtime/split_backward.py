"""Split backward: I computes the gradient of the stage's input now, W the weights' gradients later.

A stage's backward does two different jobs. The gradient of its *input* is what the previous stage is waiting for;
the gradients of its *weights* nobody needs until the optimizer step. Zero-bubble schedules (Qi et al., arXiv
2401.10241) run them as two actions: ``sIm`` computes the input gradient and sends it upstream at once, ``sWm``
computes the weight gradients later, whenever the rank would otherwise idle. How it is done here, with plain autograd:

* **Forward** (``forward``): the stage runs as usual; a forward hook on each layer keeps that layer's output, so the
  graph has a handle at every layer boundary.
* **I** (``backward_input``): one ``torch.autograd.grad`` from the stage's output (or loss) to its input *and* to
  every layer's output, with ``retain_graph=True``. Autograd runs only the nodes on paths to what was asked for, so
  the weight gradients are not computed; the gradient at each layer's output is kept for W.
* **W** (``backward_weight``): per layer, ``torch.autograd.backward(layer_output, kept_grad, inputs=its weights)``,
  which walks only that layer's part of the kept graph and accumulates into ``.grad`` as a fused backward would.

``torch.distributed.pipelining`` does the same thing graph-generally (``stage_backward_input`` finds the nodes where
weights hang off the input's path and keeps their gradients; ``stage_backward_weight`` resumes from there); cutting
at layer boundaries is the simple version of that idea. The price: between I and W the rank still holds the
activations W needs and, in addition, the gradients kept at each layer's output (``kept_bytes``).

A full backward ``sBm`` on a stage that records (a schedule mixing B with I and W, as DualPipeV does) is
``backward_input`` then ``backward_weight`` at once: the same gradients as a fused backward, paced I + W.

Pacing: I and W are padded to their own durations here (the forward keeps its ``labs.runtime.pacing`` padding).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .pacing import sleep_until

__all__ = ["SplitBackward"]


class SplitBackward:
    """Runs one stage's forward, I and W for any number of micro-batches in flight.

    ``layers`` is the stage's ``nn.Sequential``; ``input_s`` and ``weight_s`` the padded durations of I and W in
    seconds (0: unpaced).
    """

    def __init__(self, layers: nn.Sequential, input_s: float = 0.0, weight_s: float = 0.0):
        self.layers, self.input_s, self.weight_s = layers, input_s, weight_s
        self._recording: list | None = None
        self._outputs: dict = {}  # micro-batch -> each layer's output (graph handles)
        self._kept: dict = {}  # micro-batch -> (layer outputs, their gradients), between I and W
        for layer in layers:
            layer.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        if self._recording is not None:
            self._recording.append(output)

    def forward(self, module: nn.Module, x: torch.Tensor, key) -> torch.Tensor:
        """``module(x)`` (the stage, paced or not) with each layer's output recorded under ``key``."""
        self._recording = []
        try:
            out = module(x)
        finally:
            self._outputs[key], self._recording = self._recording, None
        return out

    def backward_input(self, key, root: torch.Tensor, grad: torch.Tensor | None, x: torch.Tensor):
        """I: the gradient of the stage input ``x`` (None when ``x`` needs none), weight gradients left for W."""
        start = time.perf_counter()
        outputs = self._outputs.pop(key)
        wanted = ([x] if x.requires_grad else []) + outputs
        grads = torch.autograd.grad(root, wanted, grad, retain_graph=True)
        input_grad = grads[0] if x.requires_grad else None
        self._kept[key] = (outputs, list(grads[1:] if x.requires_grad else grads))
        sleep_until(start + self.input_s)
        return input_grad

    def backward_weight(self, key) -> None:
        """W: accumulate the weights' gradients into ``.grad`` from the graph I kept, then let it go."""
        start = time.perf_counter()
        outputs, grads = self._kept.pop(key)
        for layer, output, grad in zip(self.layers, outputs, grads):
            params = [p for p in layer.parameters() if p.requires_grad]
            if params:
                torch.autograd.backward(output, grad, inputs=params)
        sleep_until(start + self.weight_s)

    def kept_bytes(self, key) -> int:
        """Bytes of the layer-output gradients held for ``key``'s W (beyond the activations autograd saved)."""
        return sum(g.untyped_storage().nbytes() for g in self._kept[key][1]) if key in self._kept else 0
