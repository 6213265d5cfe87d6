"""Live tensor bytes on one rank over a step, measured as the allocator sees them and split by what holds them.

    with MemoryLedger(parameters) as ledger:      # one step of the runtime
        ...
    ledger.summary()   # {"peak_bytes", "at_peak_bytes": {category: bytes}, "category_peak_bytes", "device_peak_bytes"}

How it measures (issue 15's "memory measured, not counted"):

* **Every storage an operation creates is entered with its bytes** (``storage.nbytes()``, what the allocator hands
  out): the ledger is a ``TorchDispatchMode``, so every aten op of the step passes through it (factory functions,
  kernels, the autograd engine's backward ops). A weak reference on the storage removes it the moment it is freed
  (a storage keeps one Python object while it lives), so the live total rises and falls with the allocator's.
  Storages that exist before the step (the parameters) are entered when labelled. ``tests/test_memory.py`` checks
  the ledger against the profiler's allocator events (``torch.profiler``, ``profile_memory=True``): the same
  allocations in the same order, less scratch memory a kernel allocates and frees inside one op.
* **Categories**, each storage in the first that applies: ``parameters``; ``gradients`` (a parameter's ``.grad``);
  ``activations`` (held by autograd for a backward: entered by the saved-tensor hook, left when autograd lets it go;
  a split backward's saved tensors stay here until its W); ``communication`` (a posted receive buffer, or a send's
  payload until its send completes: labelled by the transport); ``data`` (inputs and targets); ``other``
  (temporaries: a backward's working set, a recompute's rebuilt activations, the output gradient a split backward
  keeps for its W). A storage with two roles counts once, in the first.
* **On a GPU** ``device_peak_bytes`` adds ``torch.cuda.max_memory_allocated`` over the step (less what was
  allocated on entry), the caching allocator's own figure.

Not seen: memory outside torch's allocator (gloo's socket buffers, NCCL's staging buffers).
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..models.memory import SavedBytes

__all__ = ["CATEGORIES", "CountedSaves", "MemoryLedger", "active", "label", "measured", "unlabel"]

CATEGORIES = ("parameters", "gradients", "activations", "communication", "data", "other")
_ACTIVE: list = []  # the ledger recording in this process (at most one)


def active() -> "MemoryLedger | None":
    """The ledger recording in this process now, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def label(tensor: torch.Tensor, category: str) -> torch.Tensor:
    """Mark ``tensor``'s storage as ``category`` in the recording ledger (nothing when none records); ``tensor``."""
    if _ACTIVE:
        _ACTIVE[-1].label(tensor, category)
    return tensor


def unlabel(tensor: torch.Tensor, category: str) -> torch.Tensor:
    """Take ``category`` off ``tensor``'s storage (a received buffer handed to its consumer); ``tensor``."""
    if _ACTIVE:
        _ACTIVE[-1].unlabel(tensor, category)
    return tensor


class _Saved:
    """What autograd stores for a saved tensor while a ledger records: the tensor, detached (a saved output that
    held itself would make a cycle with its own grad_fn that outlives the step), and a hold on its storage that ends
    when autograd drops the saved reference."""

    __slots__ = ("tensor", "ledger", "key")

    def __init__(self, tensor, ledger, key):
        self.tensor, self.ledger, self.key = tensor.detach(), ledger, key

    def __del__(self):
        self.ledger._release(self.key)


def _unpack(packed):
    return packed.tensor if isinstance(packed, _Saved) else packed


class CountedSaves(SavedBytes):
    """``labs.models.memory.SavedBytes`` (the count each forward's event reports) that also shows the recording
    ledger what autograd holds (the runtime's stages use it), and keeps saved tensors detached so that a graph
    dropped without a backward is freed at once (a saved output holding itself is a cycle with its own grad_fn)."""

    def _pack(self, tensor):
        tensor = super()._pack(tensor)
        return _ACTIVE[-1].hold(tensor) if _ACTIVE else tensor.detach()  # detached: see _Saved

    def counting(self):
        self.seen, self.total = set(), 0
        return torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)


class _Entry:
    __slots__ = ("nbytes", "labels", "holds", "category")

    def __init__(self, nbytes: int):
        self.nbytes, self.labels, self.holds, self.category = nbytes, set(), 0, "other"


class MemoryLedger(TorchDispatchMode):
    """Live tensor bytes of this process over a region, by category (see the module docstring).

    ``parameters``: the stage's parameters (labelled on entry, with their gradients). ``device``: where the stages
    compute ("cuda..." adds the caching allocator's peak). Results: ``peak_bytes``, ``at_peak`` (the categories at
    that moment), ``category_peaks`` (each category's own maximum), ``bytes`` (now), ``summary()``. Raises
    RuntimeError when another ledger already records in this process.
    """

    def __init__(self, parameters=(), device: str = "cpu"):
        super().__init__()
        self.device = torch.device(device)
        self.entries: dict[int, _Entry] = {}
        self.bytes = dict.fromkeys(CATEGORIES, 0)
        self.total = self.peak_bytes = 0
        self.at_peak = dict(self.bytes)
        self.category_peaks = dict(self.bytes)
        self.device_peak_bytes = None
        self._parameters = list(parameters)
        self._handles: list = []
        self._hooks = None
        self._cuda_base = 0
        self._lock = threading.RLock()  # storages may be freed on another thread (the transport's send completions)

    def _enter(self, tensor) -> int | None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta" or tensor.is_sparse:
            return None
        storage = tensor.untyped_storage()
        key = storage._cdata
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                entry = self.entries[key] = _Entry(storage.nbytes())
                weakref.finalize(storage, self._freed, key)
                self._add(entry.category, entry.nbytes)
            elif entry.nbytes != storage.nbytes():  # resized in place
                self._add(entry.category, storage.nbytes() - entry.nbytes)
                entry.nbytes = storage.nbytes()
        return key

    def _freed(self, key) -> None:
        with self._lock:
            entry = self.entries.pop(key, None)
            if entry is not None:
                self._add(entry.category, -entry.nbytes)

    def _add(self, category: str, nbytes: int) -> None:
        self.bytes[category] += nbytes
        self.total += nbytes
        self.category_peaks[category] = max(self.category_peaks[category], self.bytes[category])
        if self.total > self.peak_bytes:
            self.peak_bytes, self.at_peak = self.total, dict(self.bytes)

    def _recategorize(self, key) -> None:
        entry = self.entries.get(key)
        if entry is None:
            return
        new = next((c for c in CATEGORIES[:-1] if c in entry.labels or (c == "activations" and entry.holds)), "other")
        if new != entry.category:
            self.bytes[entry.category] -= entry.nbytes
            self.total -= entry.nbytes
            entry.category = new
            self._add(new, entry.nbytes)

    def label(self, tensor: torch.Tensor, category: str) -> None:
        """Mark ``tensor``'s storage as ``category`` until it is freed (entered now if not seen yet)."""
        if category not in CATEGORIES:
            raise ValueError(f"category is one of {CATEGORIES}, got {category!r}")
        key = self._enter(tensor)
        if key is not None:
            with self._lock:
                self.entries[key].labels.add(category)
                self._recategorize(key)

    def unlabel(self, tensor: torch.Tensor, category: str) -> None:
        key = self._enter(tensor)
        if key is not None:
            with self._lock:
                self.entries[key].labels.discard(category)
                self._recategorize(key)

    def hold(self, tensor: torch.Tensor):
        """The saved-tensor pack hook: count ``tensor``'s storage as held by autograd until it is let go."""
        key = self._enter(tensor)
        if key is None:
            return tensor
        with self._lock:
            self.entries[key].holds += 1
            self._recategorize(key)
        return _Saved(tensor, self, key)

    def _release(self, key) -> None:
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None:
                entry.holds -= 1
                self._recategorize(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            self._enter(tensor)
        return out

    def __enter__(self):
        if _ACTIVE:
            raise RuntimeError("a MemoryLedger is already recording in this process: one at a time")
        for p in self._parameters:
            self.label(p, "parameters")
            if p.grad is not None:
                self.label(p.grad, "gradients")
            self._handles.append(p.register_post_accumulate_grad_hook(lambda p: self.label(p.grad, "gradients")))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda_base = torch.cuda.memory_allocated(self.device)
        _ACTIVE.append(self)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.hold, _unpack)
        self._hooks.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        self._hooks.__exit__(*exc)
        _ACTIVE.remove(self)
        for handle in self._handles:
            handle.remove()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.device_peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._cuda_base
        return result

    def summary(self) -> dict:
        """Bytes, JSON-ready: the peak, the categories at the peak, each category's own peak, the GPU's peak."""
        return {"peak_bytes": self.peak_bytes, "at_peak_bytes": dict(self.at_peak),
                "category_peak_bytes": dict(self.category_peaks), "device_peak_bytes": self.device_peak_bytes}


@contextmanager
def measured(stages: dict, device: str, on: bool = True):
    """A ``MemoryLedger`` over the block when ``on`` (else None), the parameters of ``stages`` (stage -> an object
    with ``layers``) labelled first."""
    if not on:
        yield None
        return
    with MemoryLedger([p for stage in stages.values() for p in stage.layers.parameters()], device) as ledger:
        yield ledger
