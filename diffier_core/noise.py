"""Seeded, per-sample noise for the inner loop: the same sampler seed gives the same draws."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .errors import DiffIERParameterError

__all__ = ["mix_seed", "sample_seeds", "PerSampleNoise"]

_MASK64 = (1 << 63) - 1


def mix_seed(*parts: int | bytes) -> int:
    """A 63-bit seed hashed from integers and byte strings (stable across runs and platforms)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p if isinstance(p, bytes) else int(p).to_bytes(16, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & _MASK64


def sample_seeds(seed: int, initial_noise: torch.Tensor) -> list[int]:
    """One seed per sample, from the sampler's seed and that sample's initial noise.

    Keying on the sample's own initial noise (which ComfyUI derives from the seed and the latent's
    ``batch_index``) makes a sample's inner-loop noise independent of the other samples in its batch.
    """
    flat = initial_noise.detach().reshape(initial_noise.shape[0], -1).to("cpu", torch.float32).contiguous()
    return [mix_seed(seed, row.numpy().tobytes()) for row in flat]


class PerSampleNoise:
    """Draws ε ~ N(0, I) per sample from its own generator, on the device of the latent.

    Args:
        seeds: one seed per sample; samples beyond ``len(seeds)`` get a seed mixed from the last one.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        if len(seeds) == 0:
            raise DiffIERParameterError("seeds", list(seeds), "at least one seed")
        self.seeds = [int(s) for s in seeds]
        self._generators: dict[tuple[str, int], torch.Generator] = {}

    def _generator(self, device: torch.device, index: int) -> torch.Generator:
        key = (str(device), index)
        gen = self._generators.get(key)
        if gen is None:
            seed = self.seeds[index] if index < len(self.seeds) else mix_seed(self.seeds[-1], index)
            gen = torch.Generator(device=device)
            gen.manual_seed(seed)
            self._generators[key] = gen
        return gen

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        """A new float32 tensor of ``like``'s shape; sample ``i`` drawn from generator ``i``."""
        out = torch.empty(like.shape, device=like.device, dtype=torch.float32)
        for i in range(like.shape[0]):
            out[i].normal_(generator=self._generator(like.device, i))
        return out
