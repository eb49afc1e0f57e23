"""Count host-device synchronisation points (``.item()``, ``bool(t)``, ``.cpu()``, ...) in a block of code.

Deterministic on any device, including the CPU where nothing actually stalls: every host read
(``item``, ``bool``, ``float``, ``int``, ``tolist``, ``numpy``, ``cpu``) is counted wherever the tensor
lives, and ``to(cpu)`` when it moves an accelerator tensor to the host.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["SyncCounter"]

_SYNCING = {
    torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.__index__, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu,
}


def _to_host(args, kwargs) -> bool:
    """``t.to(...)`` moving an accelerator tensor to the host (a CPU tensor moved to the CPU is not a sync)."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu":
        return False
    targets = list(args[1:]) + [kwargs.get("device")]
    return any((isinstance(t, str) and t.startswith("cpu")) or (isinstance(t, torch.device) and t.type == "cpu")
               for t in targets)


class SyncCounter(TorchFunctionMode):
    """``with SyncCounter() as c: ...`` then ``c.count`` (and ``c.calls``, the names in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @property
    def count(self) -> int:
        return len(self.calls)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNCING or (func is torch.Tensor.to and _to_host(args, kwargs)):
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)
