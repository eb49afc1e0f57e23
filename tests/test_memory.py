"""benchmarks/instruments/memory.py and DiffIER's working set: at most four float32 latent-sized buffers per step."""

import pytest
import torch
from pack_loader import import_core

from benchmarks.instruments import PeakMemory

core = import_core()


def test_peak_memory_counts_allocations_and_releases():
    a = torch.ones(1000)
    with PeakMemory() as m:
        b = a * 2        # +4000 bytes
        c = b + 1        # +4000
        del b
        d = c * 3        # +4000 (b already freed)
    assert m.peak_bytes == 8000
    assert m.live_bytes == 8000  # c and d alive
    del c, d
    with PeakMemory() as m2:
        a.mul_(2)        # in place on memory the block did not allocate
        _ = a.view(10, 100)
    assert m2.peak_bytes == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["paper", "consistency"])
@pytest.mark.parametrize("batch", [1, 4])
def test_working_set_at_most_four_latents(mode, dtype, batch):
    shape = (batch, 4, 48, 48)
    latent_fp32 = 4 * batch * 4 * 48 * 48
    x, d = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    target = torch.randn(shape).to(dtype)
    config = core.DiffIERSettings(mode=mode, threshold=0.0, max_iters=8)
    with PeakMemory() as m:
        out, _ = core.diffier_step(x, d, *core.convention_scales(torch.tensor(0.5), "eps"), config,
                                   core.PerSampleNoise(list(range(batch))), evaluate=lambda xp: target)
    assert m.peak_bytes <= 4 * latent_fp32, m.peak_bytes / latent_fp32
    assert out.dtype == dtype
