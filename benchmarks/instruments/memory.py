"""Peak bytes of tensor storage allocated inside a block of code (device-independent, deterministic).

Counts every storage created by an operator while the block runs and releases it when its last
tensor dies, so ``peak_bytes`` is the high-water mark of memory the block itself added. Used by the
overhead benchmark and tests to check DiffIER's working set in latent-sized buffers.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["PeakMemory"]


class PeakMemory(TorchDispatchMode):
    """``with PeakMemory() as m: ...`` then ``m.peak_bytes`` (storage added by the block at its peak)."""

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._refs: dict[int, int] = {}     # storage data_ptr -> number of live tensors using it
        self._sizes: dict[int, int] = {}
        self._known: set[int] = set()

    def _release(self, ptr: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            del self._refs[ptr]
            self.live_bytes -= self._sizes.pop(ptr)

    def _track(self, t: torch.Tensor, inputs: set[int]) -> None:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in inputs and ptr not in self._refs:
            return  # a view of (or in-place result on) memory the block did not allocate
        if ptr not in self._refs:
            self._refs[ptr] = 0
            self._sizes[ptr] = storage.nbytes()
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._refs[ptr] += 1
        weakref.finalize(t, self._release, ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                  if isinstance(a, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t, inputs)
        return out
