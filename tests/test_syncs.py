"""benchmarks/instruments/syncs.py and the sync budget of a correction step (none in paper mode, one in consistency)."""

import pytest
import torch
from pack_loader import import_core

from benchmarks.instruments import SyncCounter

core = import_core()


def test_counter_sees_host_reads_and_ignores_device_math():
    t = torch.ones(3)
    with SyncCounter() as c:
        _ = t * 2 + 1
        _ = t.to(torch.float64)
    assert c.count == 0
    with SyncCounter() as c:
        bool(t.any())
        float(t.sum())
        t.tolist()
        t.cpu()
        t.to("cpu")  # already on the host: no sync
    assert c.calls == ["__bool__", "__float__", "tolist", "cpu"]


@pytest.mark.parametrize("mode, max_iters, expected", [("paper", 4, 0), ("paper", 50, 0), ("consistency", 4, 1),
                                                       ("consistency", 1, 0)])
def test_sync_budget_per_step(mode, max_iters, expected):
    x = torch.randn(2, 4, 16, 16)
    d = torch.randn(2, 4, 16, 16)
    noise = core.PerSampleNoise([1, 2])
    config = core.DiffIERSettings(mode=mode, max_iters=max_iters, threshold=0.0)
    with SyncCounter() as c:
        core.diffier_step(x, d, *core.convention_scales(torch.tensor([0.5, 0.5]), "eps"), config, noise,
                          evaluate=lambda xp: xp * 0.5)
    assert c.count == expected, c.calls
