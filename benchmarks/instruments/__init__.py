"""Measuring instruments of the benchmarks and tests: host-device synchronisations (``SyncCounter``), the peak
tensor storage a block of code adds (``PeakMemory``), plain torch and deterministic on any device; and the model rows
and model time of a ComfyUI sampling run (``ModelRows``, an ``APPLY_MODEL`` wrapper)."""

from .memory import PeakMemory
from .rows import ModelRows
from .syncs import SyncCounter

__all__ = ["ModelRows", "PeakMemory", "SyncCounter"]
