"""Data of the super-resolution testbed (pure torch/numpy/scikit-image; no ComfyUI import).

* ``digits``: the MNIST 5k digits of the digits testbed (``training/data/digits.py``, same 4,000 / 1,000
  split), HR 28×28 in [0, 1].
* ``photos``: grey-scale versions of photos that ship inside ``scikit-image`` (``skimage.data``, no
  download), each first halved (anti-aliased) so that a 32×32 patch holds some structure. Whole photos
  are held out for testing (:data:`TEST_PHOTOS`); training draws random 32×32 patches (with flips)
  from :data:`TRAIN_PHOTOS`; the test set is a fixed, seeded set of non-flat patches of the held-out
  photos.

LR images are made from HR by ``demo/degrade.sr_degrade`` (Gaussian blur, then area downsampling).

For the benchmarks, :data:`HELD_OUT_PHOTOS` names every natural photo that ships inside an installed package and is
not in :data:`TRAIN_PHOTOS` (scikit-image, scikit-learn and matplotlib sample data; no download), and
:func:`photo_tiles` cuts fixed, non-overlapping, non-flat patches from any of them.
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

#: every natural photo shipped inside an installed package that the photo model never saw in training, and where it
#: comes from: ``skimage`` (``skimage.data.<name>()``), ``skimage_stereo`` (the left view of
#: ``skimage.data.stereo_motorcycle()``; the right view shows the same scene and is left out), ``sklearn``
#: (``sklearn.datasets.load_sample_image``) and ``matplotlib`` (``matplotlib.cbook.get_sample_data``). Left out as
#: not natural photos or too small for a 32×32 patch after halving: skimage's ``cell``, ``microaneurysms``,
#: ``lfw_subset`` (25×25 faces), ``color``, ``logo`` and the synthetic images; matplotlib's rendered images.
HELD_OUT_PHOTOS: dict[str, tuple[str, str]] = {
    "camera": ("skimage", "camera"), "astronaut": ("skimage", "astronaut"), "coffee": ("skimage", "coffee"),
    "motorcycle": ("skimage_stereo", "stereo_motorcycle"), "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"), "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}

__all__ = ["TRAIN_PHOTOS", "TEST_PHOTOS", "HELD_OUT_PHOTOS", "PHOTO_PATCH", "load_photo", "load_held_out_photo",
           "train_photos", "PatchSampler", "test_photo_patches", "photo_tiles", "digits_split"]


@functools.cache
def load_photo(name: str) -> torch.Tensor:
    """``skimage.data.<name>()`` as grey ``[H, W]`` float32 in [0, 1], rescaled by :data:`PHOTO_RESCALE`."""
    import skimage.data

    return _grey_halved(np.asarray(getattr(skimage.data, name)()))


def _read_photo(source: str, name: str) -> np.ndarray:
    """The raw pixels of a held-out photo from the package that ships it."""
    if source == "skimage":
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    if source == "skimage_stereo":
        import skimage.data

        return np.asarray(skimage.data.stereo_motorcycle()[0])
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name))
    if source == "matplotlib":
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data(name) as f:
            return np.asarray(matplotlib.image.imread(f, format=name.rsplit(".", 1)[-1]))
    raise ValueError(f"unknown photo source {source!r}")


@functools.cache
def load_held_out_photo(name: str) -> torch.Tensor:
    """A photo of :data:`HELD_OUT_PHOTOS` as grey ``[H, W]`` float32 in [0, 1], rescaled by :data:`PHOTO_RESCALE`
    (the preprocessing of :func:`load_photo`)."""
    if name not in HELD_OUT_PHOTOS:
        raise ValueError(f"photo must be one of {sorted(HELD_OUT_PHOTOS)}, got {name!r}")
    return _grey_halved(_read_photo(*HELD_OUT_PHOTOS[name]))


def _grey_halved(img: np.ndarray) -> torch.Tensor:
    """Pixels (bool, uint8 or float, grey or RGB[A]) → grey ``[H, W]`` float32 in [0, 1], halved (anti-aliased)."""
    import skimage.color
    import skimage.transform

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


def photo_tiles(name: str, n: int | None, seed: int, patch: int = PHOTO_PATCH) -> torch.Tensor:
    """``n`` HR patches ``[n, 1, P, P]`` of the held-out photo ``name``: non-flat tiles of a grid of non-overlapping
    ``P × P`` tiles (offset and choice drawn with generator ``seed``; ``n = None``: every non-flat tile).

    Raises:
        ValueError: the photo has fewer than ``n`` non-flat tiles.
    """
    img = load_held_out_photo(name)
    g = torch.Generator().manual_seed(seed)
    oy, ox = (int(torch.randint(0, (size % patch) + 1, (1,), generator=g)) for size in img.shape)
    tiles = [img[y:y + patch, x:x + patch] for y in range(oy, img.shape[0] - patch + 1, patch)
             for x in range(ox, img.shape[1] - patch + 1, patch)]
    flat_enough = [t for t in tiles if float(t.std()) >= MIN_PATCH_STD]
    n = len(flat_enough) if n is None else n
    if len(flat_enough) < n:
        raise ValueError(f"photo {name!r} has {len(flat_enough)} non-flat {patch}×{patch} tiles, {n} asked")
    order = torch.randperm(len(flat_enough), generator=g)[:n].tolist()
    return torch.stack([flat_enough[i] for i in order]).unsqueeze(1)


def digits_split() -> dict[str, torch.Tensor]:
    """The digits testbed's split (:func:`training.data.digits.load_split`)."""
    return load_split()
