"""Data of the super-resolution testbed (pure torch/numpy/scikit-image; no ComfyUI import).

* ``digits``: the MNIST 5k digits of the digits testbed (``training/data/digits.py``, same 4,000 / 1,000
  split), HR 28×28 in [0, 1].
* ``photos``: grey-scale versions of photos that ship inside ``scikit-image`` (``skimage.data``, no
  download), each first halved (anti-aliased) so that a 32×32 patch holds some structure. Whole photos
  are held out for testing (:data:`TEST_PHOTOS`); training draws random 32×32 patches (with flips)
  from :data:`TRAIN_PHOTOS`; the test set is a fixed, seeded set of non-flat patches of the held-out
  photos.

LR images are made from HR by ``demo/degrade.sr_degrade`` (Gaussian blur, then area downsampling).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .digits import load_split

TRAIN_PHOTOS = ("chelsea", "rocket", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock",
                "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "horse")
TEST_PHOTOS = ("camera", "astronaut", "coffee")
PHOTO_PATCH = 32
PHOTO_RESCALE = 0.5
MIN_PATCH_STD = 0.06   # test patches flatter than this (sky, background) are skipped

__all__ = ["TRAIN_PHOTOS", "TEST_PHOTOS", "PHOTO_PATCH", "load_photo", "train_photos", "PatchSampler",
           "test_photo_patches", "digits_split"]


@functools.cache
def load_photo(name: str) -> torch.Tensor:
    """``skimage.data.<name>()`` as grey ``[H, W]`` float32 in [0, 1], rescaled by :data:`PHOTO_RESCALE`."""
    import skimage.color
    import skimage.data
    import skimage.transform

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    if img.ndim == 3:
        img = skimage.color.rgb2gray(img[..., :3])
    img = skimage.transform.rescale(img, PHOTO_RESCALE, anti_aliasing=True)
    return torch.from_numpy(np.clip(img, 0.0, 1.0).astype(np.float32))


def train_photos() -> list[torch.Tensor]:
    return [load_photo(n) for n in TRAIN_PHOTOS]


class PatchSampler:
    """Random ``[B, 1, P, P]`` patches in [0, 1] from a list of photos (uniform photo, uniform position,
    random horizontal/vertical flips)."""

    def __init__(self, photos: list[torch.Tensor], patch: int = PHOTO_PATCH) -> None:
        self.photos, self.patch = photos, patch

    def __call__(self, batch: int, g: torch.Generator) -> torch.Tensor:
        out = torch.empty(batch, 1, self.patch, self.patch)
        which = torch.randint(0, len(self.photos), (batch,), generator=g).tolist()
        for i, k in enumerate(which):
            img = self.photos[k]
            y = int(torch.randint(0, img.shape[0] - self.patch + 1, (1,), generator=g))
            x = int(torch.randint(0, img.shape[1] - self.patch + 1, (1,), generator=g))
            p = img[y:y + self.patch, x:x + self.patch]
            if bool(torch.rand(1, generator=g) < 0.5):
                p = p.flip(-1)
            if bool(torch.rand(1, generator=g) < 0.5):
                p = p.flip(-2)
            out[i, 0] = p
        return out


def test_photo_patches(n: int, seed: int = 0, patch: int = PHOTO_PATCH) -> tuple[torch.Tensor, list[str]]:
    """``n`` fixed non-flat HR patches ``[n, 1, P, P]`` from the held-out photos (round-robin), and the
    photo each came from."""
    g = torch.Generator().manual_seed(seed)
    patches, names = [], []
    tries = 0
    while len(patches) < n:
        name = TEST_PHOTOS[len(patches) % len(TEST_PHOTOS)]
        img = load_photo(name)
        y = int(torch.randint(0, img.shape[0] - patch + 1, (1,), generator=g))
        x = int(torch.randint(0, img.shape[1] - patch + 1, (1,), generator=g))
        p = img[y:y + patch, x:x + patch]
        tries += 1
        if float(p.std()) < MIN_PATCH_STD and tries < 100 * n:
            continue
        patches.append(p)
        names.append(name)
    return torch.stack(patches).unsqueeze(1), names


def digits_split() -> dict[str, torch.Tensor]:
    """The digits testbed's split (:func:`training.data.digits.load_split`)."""
    return load_split()
