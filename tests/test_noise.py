"""diffier_core.noise: per-sample seeded draws.

Bit-identical claims compare draws of the same generator algorithm on the same per-sample shapes in one
process (a sample alone and in a batch): they hold on any CPU, as same-machine claims.
"""

import pytest
import torch
from pack_loader import import_core

core = import_core()


def test_same_seeds_same_draws_and_samples_independent():
    like = torch.zeros(3, 2, 4, 4)
    a = core.PerSampleNoise([1, 2, 3])
    b = core.PerSampleNoise([1, 2, 3])
    first_a, first_b = a(like), b(like)
    assert torch.equal(first_a, first_b)
    assert not torch.equal(a(like), first_a)  # fresh draw each call
    solo = core.PerSampleNoise([2])
    assert torch.equal(solo(like[:1])[0], first_b[1])  # sample 1's draws don't depend on its batch


def test_sample_seeds_depend_on_seed_and_own_noise_only():
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s = core.sample_seeds(7, noise)
    assert len(set(s)) == 2
    assert core.sample_seeds(7, noise[1:]) == s[1:]
    assert core.sample_seeds(8, noise) != s


def test_mix_seed_stable_golden():
    assert core.mix_seed(0) == core.mix_seed(0)
    assert 0 <= core.mix_seed(1, b"abc") < 2**63
    assert core.mix_seed(1, 2) != core.mix_seed(2, 1)


def test_extra_samples_get_derived_seeds():
    noise = core.PerSampleNoise([5])
    out = noise(torch.zeros(2, 3))
    assert out.shape == (2, 3) and not torch.equal(out[0], out[1])


def test_no_seed_is_an_error_naming_seeds():
    with pytest.raises(core.DiffIERParameterError, match="'seeds' must be at least one seed"):
        core.PerSampleNoise([])
