"""Fixtures shared by the COCO, YOLO and VOC tests: a small detection catalog on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.data.records import Annotation, Catalog, Category, ImageRecord

DETECTION_CATEGORIES = [
    Category(1, "circle", "shape"),
    Category(2, "square", "shape"),
    Category(3, "star", "symbol"),
]

# Coordinates on a 1/256-pixel grid are exact binary fractions: xyxy <-> xywh is then exact
# in float64, so a COCO write-read round trip can be compared with ==, while the
# 6-decimal normalised YOLO values and 4-decimal VOC values still have to round them.
_GRID = 256


def _on_grid(rng: np.random.Generator, low: float, high: float) -> float:
    """A non-integer value in ``[low, high]`` on the 1/256 grid."""
    value = np.floor(rng.uniform(low, high) * _GRID) / _GRID
    return float(value if value % 1 else value + 0.5)


def diamond(bbox: tuple[float, float, float, float]) -> list[float]:
    """A polygon touching the middle of each side of ``bbox``: its extent is the box."""
    x1, y1, x2, y2 = bbox
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return [cx, y1, x2, cy, cx, y2, x1, cy]


def _annotations(
    rng: np.random.Generator, width: int, height: int, first_id: int
) -> list[Annotation]:
    annotations = []
    for k in range(int(rng.integers(1, 9))):
        x1, y1 = _on_grid(rng, 0, width - 12), _on_grid(rng, 0, height - 12)
        bbox = (x1, y1, _on_grid(rng, x1 + 3, width - 1), _on_grid(rng, y1 + 3, height - 1))
        annotation_id = first_id + k
        annotations.append(
            Annotation(
                bbox=bbox,
                category_id=1 + annotation_id % 3,
                id=annotation_id,
                difficult=annotation_id % 5 == 0,
                segmentation=[diamond(bbox)] if annotation_id % 3 == 0 else None,
            )
        )
    return annotations


@pytest.fixture
def detection_catalog(tmp_path: Path) -> Catalog:
    """20 PNGs of 40-64 x 32-56 px with 1-8 float boxes each, 3 categories with ids 1..3,
    every third object with a polygon and every fifth marked difficult."""
    rng = np.random.default_rng(7)
    root = tmp_path / "source"
    root.mkdir()
    records, next_id = [], 1
    for image_id in range(1, 21):
        width, height = int(rng.integers(40, 65)), int(rng.integers(32, 57))
        name = f"{image_id:06d}.png"
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
        annotations = _annotations(rng, width, height, next_id)
        next_id += len(annotations)
        records.append(ImageRecord(name, width, height, image_id, annotations))
    return Catalog(root, list(DETECTION_CATEGORIES), records)
