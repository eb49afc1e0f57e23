"""Count the model rows (batch entries) and the model calls of a ComfyUI sampling run, and time them.

``ModelRows`` is ComfyUI's ``APPLY_MODEL`` wrapper: every ``apply_model`` call adds one to ``calls`` (sequential model
calls: each carries every image of the batch), its batch size to ``rows`` (cond and uncond count one each; a guider
that batches them counts both) and its duration to ``seconds`` (CUDA events on a CUDA device, so the count adds no
synchronisation; ``perf_counter`` elsewhere).
"""

from __future__ import annotations

import time
from typing import Any

import torch

__all__ = ["ModelRows"]


class ModelRows:
    """``counted = ModelRows().on(model)``, sample with ``counted``, then ``rows``, ``calls`` and ``seconds``.

    Args:
        device: where the model runs (default: the CPU); on CUDA the calls are timed with CUDA events.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        """Zero the rows, the calls and the time."""
        self.rows = 0
        self.calls = 0
        self._spans: list[tuple[Any, Any]] = []
        self._seconds = 0.0

    def on(self, model: Any, key: str = "diffier-model-rows") -> Any:
        """A clone of the ComfyUI ``ModelPatcher`` ``model`` with this counter on its ``apply_model`` (``model`` itself
        is untouched).

        Args:
            model: the ModelPatcher.
            key: the wrapper's key (one counter per key on a model).
        """
        import comfy.patcher_extension

        counted = model.clone()
        counted.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, self)
        return counted

    def __call__(self, executor: Any, x: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.rows += x.shape[0]
        self.calls += 1
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = executor(x, t, *args, **kwargs)
            end.record()
            self._spans.append((start, end))
            return out
        t0 = time.perf_counter()
        out = executor(x, t, *args, **kwargs)
        self._seconds += time.perf_counter() - t0
        return out

    @property
    def seconds(self) -> float:
        """Model time so far (synchronises on CUDA: read it after the run)."""
        if self._spans:
            torch.cuda.synchronize(self.device)
            self._seconds += sum(s.elapsed_time(e) for s, e in self._spans) / 1000.0
            self._spans = []
        return self._seconds
