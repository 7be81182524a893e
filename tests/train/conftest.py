"""Tiny models and datasets for the training tests: fast on a CPU, easy to learn.

:class:`ProtocolClassifier` puts the classifier protocol on any small backbone, for the
tests of the transfer strategies (linear probe, partial, LoRA, cached features).

The helpers are plain module-level functions and classes as well as fixtures, so a test
that trains in a subprocess (resume after a kill, torchrun) can load this file by path
(:data:`CONFTEST`) and build the very same model and data there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from visionkit.train.config import TrainConfig

CONFTEST = Path(__file__).resolve()

# Blob centres (row, column) on an 8 x 8 canvas, one per class, far enough apart that the
# classes separate, close enough that noise makes a few samples hard.
_CENTRES = ((2.0, 2.0), (2.0, 5.5), (5.5, 2.0), (5.5, 5.5), (3.75, 3.75), (1.0, 7.0))


def blob_images(count: int, num_classes: int, seed: int, noise: float = 0.3):
    """``count`` images ``float32 [N, 3, 8, 8]`` of one Gaussian blob each and their labels
    ``int64 [N]``: the blob's centre (jittered) says the class. A pure function of its
    arguments."""
    if not 1 <= num_classes <= len(_CENTRES):
        raise ValueError(f"num_classes must be in 1..{len(_CENTRES)}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % num_classes
    centres = torch.tensor(_CENTRES[:num_classes])[labels]
    centres = centres + 0.5 * torch.randn(count, 2, generator=generator)
    grid = torch.arange(8.0)
    dy = (grid[None, :] - centres[:, :1]) ** 2
    dx = (grid[None, :] - centres[:, 1:]) ** 2
    blobs = torch.exp(-(dy[:, :, None] + dx[:, None, :]) / 2.0)
    images = blobs[:, None].expand(-1, 3, -1, -1).clone()
    images += noise * torch.randn(images.shape, generator=generator)
    return images, labels


class BlobDataset(Dataset):
    """:func:`blob_images` as a dataset; ``augment`` adds fresh noise from torch's global
    generator on every read, so the result depends on how loader workers are seeded."""

    def __init__(
        self, count: int, num_classes: int, seed: int, augment: float = 0.0, noise: float = 0.3
    ) -> None:
        self.images, self.labels = blob_images(count, num_classes, seed, noise)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = image + self.augment * torch.randn(image.shape)
        return image, int(self.labels[index])


class TinyCNN(nn.Module):
    """Conv, BatchNorm, ReLU, max-pool, dropout and a linear head: about 600 parameters for
    4 classes, with every kind of state the trainer must save (buffers, a random layer)."""

    def __init__(self, num_classes: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * 4 * 4, num_classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class ProtocolClassifier(nn.Module):
    """The classifier protocol (``forward_features``, ``forward_head``, ``reset_classifier``,
    ``stages()``) on any backbone ``[B, 3, H, W] -> [B, feature_dim]``, with a linear head.

    Args:
        backbone: Images to features.
        feature_dim: Features per image.
        stage_names: Names of the backbone's submodules that :meth:`stages` returns.
        num_classes: Classes of the head.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        stage_names: tuple[str, ...],
        num_classes: int = 3,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stage_names = stage_names
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes

    def stages(self) -> list[nn.Module]:
        return [self.backbone.get_submodule(name) for name in self.stage_names]


@pytest.fixture
def protocol_classifier() -> type[ProtocolClassifier]:
    """The class :class:`ProtocolClassifier`:
    ``protocol_classifier(backbone, feature_dim, stage_names, num_classes=3)``."""
    return ProtocolClassifier


@pytest.fixture
def one_thread():
    """One torch thread for the test: for hundreds of tiny optimiser steps on a shared CPU,
    where thread hand-offs would dominate. Use with ``pytest.mark.usefixtures``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def blobs():
    """Factory: ``blobs(count, num_classes=4, seed=0, augment=0.0, noise=0.3)``, a
    :class:`BlobDataset`."""

    def make(
        count: int, num_classes: int = 4, seed: int = 0, augment: float = 0.0, noise: float = 0.3
    ) -> BlobDataset:
        return BlobDataset(count, num_classes, seed, augment, noise)

    return make


@pytest.fixture
def tiny_cnn():
    """Factory: ``tiny_cnn(num_classes=4, seed=0, dropout=0.1) -> TinyCNN``, seeded."""

    def make(num_classes: int = 4, seed: int = 0, dropout: float = 0.1) -> TinyCNN:
        torch.manual_seed(seed)
        return TinyCNN(num_classes, dropout)

    return make


@pytest.fixture
def fast_config():
    """Factory: a :class:`TrainConfig` sized for the tiny data (3 epochs, batch 32, no
    workers, quiet); keywords override any field."""

    def make(**overrides) -> TrainConfig:
        values = {"epochs": 3, "batch": 32, "lr": 0.01, "workers": 0, "quiet": True}
        return TrainConfig(**{**values, **overrides})

    return make
