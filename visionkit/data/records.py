"""The format-free description of a labelled image dataset.

Every dataset format (COCO, YOLO, VOC, image folders, PNG masks) is read into a
:class:`Catalog` and written from one, so converting between formats is
``write_X(read_Y(path), out)`` and every later stage (checks, torch datasets,
drawing) deals with one shape of data. Conventions, fixed here once:

- boxes are ``xyxy`` absolute pixels (float); conversion happens at the format edge;
- polygons are flat ``[x0, y0, x1, y1, ...]`` lists in absolute pixels; RLE is the
  pycocotools dict ``{"size": [h, w], "counts": str | list[int]}``;
- category ids are the dataset's own (COCO's may have gaps); semantic mask pixels hold
  the category id, 0 is background and :data:`IGNORE_INDEX` is "not labelled";
- image paths are relative to :attr:`Catalog.root`, which is the folder of the dataset
  file itself, never a hidden global folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE_INDEX = 255
"""Semantic-mask value for pixels that carry no label (as in VOC and Cityscapes)."""

Segmentation = list[list[float]] | dict[str, Any]
"""A list of flat polygons (absolute pixels) or a pycocotools RLE dict."""


@dataclass(frozen=True)
class Category:
    """One class of the dataset.

    Args:
        id: The dataset's id for the class (COCO ids may start at 1 and have gaps).
        name: Human-readable, unique name.
        supercategory: COCO's grouping name; empty when the format has none.
    """

    id: int
    name: str
    supercategory: str = ""


@dataclass
class Annotation:
    """One labelled object in an image.

    Args:
        bbox: ``(x1, y1, x2, y2)`` in absolute pixels.
        category_id: The :class:`Category` id.
        id: Annotation id, unique in the dataset (COCO's ``id``); 0 when unknown.
        iscrowd: COCO crowd region: matched as "ignore" by evaluation.
        difficult: VOC ``difficult`` flag: neither helps nor hurts evaluation.
        segmentation: Polygons or RLE (see :data:`Segmentation`), or None.
        area: Segment area in pixels (COCO's ``area``); None means "box area".
    """

    bbox: tuple[float, float, float, float]
    category_id: int
    id: int = 0
    iscrowd: bool = False
    difficult: bool = False
    segmentation: Segmentation | None = None
    area: float | None = None


@dataclass
class ImageRecord:
    """One image and its labels.

    Args:
        file: Image path relative to the catalog root (absolute paths are kept as they are).
        width: Image width in pixels, as stored in the dataset file (0 when unknown).
        height: Image height in pixels, as stored in the dataset file (0 when unknown).
        id: Image id, unique in the dataset.
        annotations: Objects in the image (detection and instance segmentation).
        label: Category id of the whole image (classification), or None.
        mask_file: Semantic mask PNG relative to the catalog root, or None.
    """

    file: str
    width: int
    height: int
    id: int
    annotations: list[Annotation] = field(default_factory=list)
    label: int | None = None
    mask_file: str | None = None


@dataclass
class Catalog:
    """A labelled dataset split, independent of its file format.

    Args:
        root: Folder that relative image and mask paths resolve against.
        categories: Every class, in the dataset's order.
        images: Every image with its labels.
        source: The dataset file or folder this was read from (named in error messages).

    Example:
        >>> cat = Catalog(Path("."), [Category(1, "circle")], [])
        >>> cat.names
        {1: 'circle'}
    """

    root: Path
    categories: list[Category]
    images: list[ImageRecord]
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    @property
    def names(self) -> dict[int, str]:
        """Category id -> name, in the dataset's order."""
        return {c.id: c.name for c in self.categories}

    @property
    def class_index(self) -> dict[int, int]:
        """Category id -> contiguous class index ``0..K-1`` (the order of :attr:`categories`)."""
        return {c.id: i for i, c in enumerate(self.categories)}

    def image_path(self, record: ImageRecord) -> Path:
        """Absolute path of ``record``'s image."""
        return self.root / record.file

    def mask_path(self, record: ImageRecord) -> Path | None:
        """Absolute path of ``record``'s semantic mask, or None when it has none."""
        return None if record.mask_file is None else self.root / record.mask_file

    def num_annotations(self) -> int:
        """Number of object annotations over all images."""
        return sum(len(r.annotations) for r in self.images)
