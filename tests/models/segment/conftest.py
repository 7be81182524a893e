"""Fixtures of the segmenter tests: one torch thread, small shapes scenes as tensors, and
the short training run that the family tests hold their models to."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.data.datasets import load_dataset
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import segmentation_transforms
from visionkit.metrics.segmentation import SegmentationMetrics

Split = tuple[torch.Tensor, torch.Tensor]

SHAPES_CLASSES = 7
"""Background and the six shapes of a ``shapes`` export."""


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs on one torch thread (see the root ``one_torch_thread``)."""


def _tensors(root: Path, split: str, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    transforms = segmentation_transforms(False, side)
    dataset = load_dataset(root, "segment", split=split, transforms=transforms)
    images, masks = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(images), torch.stack(masks)


def shapes_tensors(out: Path, *, train: int, val: int, side: int) -> dict[str, Split]:
    """A ``shapes`` export into ``out`` as tensors: split name -> (images ``[N, 3, side,
    side]`` normalised, masks ``[N, side, side]`` int64 in 0..6)."""
    root = export_synthetic(out, train=train, val=val, imgsz=side, seed=0, workers=1)
    return {split: _tensors(root, split, side) for split in ("train", "val")}


@pytest.fixture(scope="session")
def shapes_64(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Split]:
    """48 training and 24 held-out ``shapes`` scenes at 64 px (see :func:`shapes_tensors`)."""
    return shapes_tensors(tmp_path_factory.mktemp("shapes64"), train=48, val=24, side=64)


def fit_and_score(
    model: torch.nn.Module, train: Split, val: Split, steps: int, batch: int | None = None
) -> dict:
    """Train ``model`` on ``train``; its :class:`SegmentationMetrics` results on ``val``.

    AdamW at lr 1e-2 on cross-entropy (255 ignored), one-cycle schedule annealed to zero
    so the BatchNorm running statistics catch up with the last weights. Each step takes
    all of ``train``, or ``batch`` scenes drawn from a generator seeded 0.
    """
    images, masks = train
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, steps, pct_start=0.2)
    order = torch.Generator().manual_seed(0)
    for _ in range(steps):
        drawn = torch.randint(len(images), (batch,), generator=order) if batch else slice(None)
        loss = F.cross_entropy(model(images[drawn]), masks[drawn], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    metrics = SegmentationMetrics(SHAPES_CLASSES)
    with torch.no_grad():
        metrics.update(model.eval()(val[0]).argmax(1).numpy(), val[1].numpy())
    return metrics.compute()
