"""Measuring instruments of the benchmarks and tests: host-device synchronisations (``SyncCounter``) and the peak
tensor storage a block of code adds (``PeakMemory``). Plain torch, deterministic on any device."""

from .memory import PeakMemory
from .syncs import SyncCounter

__all__ = ["PeakMemory", "SyncCounter"]
