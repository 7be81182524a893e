"""Torch datasets over a :class:`~visionkit.data.records.Catalog`, one per task.

Each ``__getitem__`` reads the image with :func:`visionkit.data.images.read_image` (EXIF
orientation applied, any mode to RGB) and returns ``(image, target)`` as torchvision
``tv_tensors``, so ``torchvision.transforms.v2`` moves boxes and masks with the pixels
and the batches fit torchvision's model contracts:

- :class:`ClassificationDataset`: target is the class index (``int``);
- :class:`DetectionDataset`: target is a dict of boxes, labels, masks, image id and crowd
  flags; batch it with :func:`collate_detection`;
- :class:`SegmentationDataset`: target is a ``[H, W]`` class-index mask.

Labels are contiguous class indices ``0..K-1`` (:attr:`Catalog.class_index`), not the
dataset's category ids, because losses and logits index classes by position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from visionkit.data.check import load_checked
from visionkit.data.formats.masks import render_mask
from visionkit.data.images import read_image, read_mask
from visionkit.data.records import IGNORE_INDEX, Annotation, Catalog, ImageRecord
from visionkit.errors import ConfigError, DataError, ImageError
from visionkit.ops.boxes import box_area
from visionkit.ops.masks import segmentation_to_mask

Transform = Callable[..., Any]
"""A ``torchvision.transforms.v2`` pipeline, or any callable with the same contract."""

T = TypeVar("T")

__all__ = [
    "ClassificationDataset",
    "DetectionDataset",
    "SegmentationDataset",
    "Transform",
    "annotation_area",
    "collate_detection",
    "load_dataset",
]


class _CatalogDataset(Dataset):
    """Reading (and with ``cache``, keeping) images and mapping category ids, shared by the
    three task datasets; ``cache`` is described in :func:`load_dataset`."""

    def __init__(
        self, catalog: Catalog, transforms: Transform | None = None, *, cache: bool = False
    ) -> None:
        self.catalog = catalog
        self.transforms = transforms
        self._class_index = catalog.class_index
        self._cache: dict[tuple[str, int], Any] | None = {} if cache else None

    @property
    def cache(self) -> bool:
        """Decoded images are kept in memory (see :func:`load_dataset`)."""
        return self._cache is not None

    def _cached(self, kind: str, record: ImageRecord, read: Callable[[], T]) -> T:
        """``read()``, kept under ``(kind, record.id)`` when caching (ids are unique)."""
        if self._cache is None:
            return read()
        key = (kind, record.id)
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    def __len__(self) -> int:
        return len(self.catalog)

    @property
    def names(self) -> list[str]:
        """Class names in class-index order."""
        return [category.name for category in self.catalog.categories]

    def _image(self, record: ImageRecord) -> tv_tensors.Image:
        """The record's image as ``uint8`` ``[3, H, W]``."""
        return self._cached("image", record, lambda: self._read_image(record))

    def _read_image(self, record: ImageRecord) -> tv_tensors.Image:
        pixels = torch.from_numpy(read_image(self.catalog.image_path(record)))
        return tv_tensors.Image(pixels.permute(2, 0, 1).contiguous())

    def _index_of(self, category_id: int | None, where: str, field: str) -> int:
        """Class index of ``category_id``, refusing a missing or unknown id."""
        if category_id not in self._class_index:
            problem = "is missing" if category_id is None else f"{category_id} is unknown"
            raise DataError(
                f"category id {problem}; expected one of the dataset's categories",
                file=self.catalog.source,
                record=where,
                field=field,
            )
        return self._class_index[category_id]


class ClassificationDataset(_CatalogDataset):
    """Images with one class each (records with ``label`` set).

    Args:
        catalog: Records with ``label`` = category id.
        transforms: Applied to the image alone, e.g.
            :func:`visionkit.data.transforms.classification_transforms`.
        cache: Keep decoded images in memory (see :func:`load_dataset`).

    Returns (``__getitem__``):
        ``(image, label)``: ``tv_tensors.Image`` ``uint8`` ``[3, H, W]`` (or what
        ``transforms`` makes of it) and the class index ``int``.

    Example:
        >>> dataset = ClassificationDataset(read_catalog("pets", format="folder"))
        ... # doctest: +SKIP
        >>> image, label = dataset[0]  # doctest: +SKIP
    """

    def __getitem__(self, index: int) -> tuple[Any, int]:
        record = self.catalog.images[index]
        label = self._index_of(record.label, f"image {record.id}", "label")
        image = self._image(record)
        if self.transforms is not None:
            image = self.transforms(image)
        return image, label


class DetectionDataset(_CatalogDataset):
    """Images with object boxes and, when the catalog has segmentations, instance masks.

    Args:
        catalog: Records with annotations (boxes ``xyxy`` absolute pixels).
        transforms: Applied to ``(image, target)`` together, e.g.
            :func:`visionkit.data.transforms.detection_transforms`.
        cache: Keep decoded images in memory (see :func:`load_dataset`).

    Returns (``__getitem__``):
        ``(image, target)``; ``image`` is ``tv_tensors.Image`` ``uint8`` ``[3, H, W]`` and
        ``target`` a dict (N annotations):

        - ``"boxes"``: ``tv_tensors.BoundingBoxes`` ``float32`` ``[N, 4]``, XYXY, canvas
          ``(H, W)``;
        - ``"labels"``: ``int64`` ``[N]`` class indices ``0..K-1``;
        - ``"masks"``: ``tv_tensors.Mask`` ``uint8`` ``[N, H, W]``, present for every
          image (``[0, H, W]`` when empty) as soon as any annotation of the catalog has a
          segmentation, so Mask R-CNN sees the key in every batch;
        - ``"image_id"``: ``int``, the record's id;
        - ``"iscrowd"``: ``int64`` ``[N]``, 1 for COCO crowd regions;
        - ``"area"``: ``float32`` ``[N]``, the annotation's area in the original image
          (COCO's ``area``, else the box area): what COCO evaluation sorts objects into
          small, medium and large by, whatever the transforms do to the pixels;
        - ``"orig_size"``: ``(height, width)`` of the image as read, so predictions on a
          resized image map back to it.
    """

    def __init__(
        self, catalog: Catalog, transforms: Transform | None = None, *, cache: bool = False
    ) -> None:
        super().__init__(catalog, transforms, cache=cache)
        self.with_masks = any(a.segmentation is not None for r in catalog for a in r.annotations)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        record = self.catalog.images[index]
        image = self._image(record)
        target = self._target(record, *image.shape[-2:])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _target(self, record: ImageRecord, height: int, width: int) -> dict[str, Any]:
        annotations = record.annotations
        boxes = torch.tensor([a.bbox for a in annotations], dtype=torch.float32).reshape(-1, 4)
        labels = [
            self._index_of(a.category_id, _where(record, a), "category_id") for a in annotations
        ]
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(
                boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
            ),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": record.id,
            "iscrowd": torch.tensor([a.iscrowd for a in annotations], dtype=torch.int64),
            "area": torch.tensor([annotation_area(a) for a in annotations], dtype=torch.float32),
            "orig_size": (height, width),
        }
        if self.with_masks:
            target["masks"] = self._instance_masks(record, height, width)
        return target

    def _instance_masks(self, record: ImageRecord, height: int, width: int) -> tv_tensors.Mask:
        """One ``uint8`` ``[H, W]`` mask per annotation, stacked: ``[N, H, W]``."""
        masks = np.zeros((len(record.annotations), height, width), dtype=np.uint8)
        for mask, annotation in zip(masks, record.annotations, strict=True):
            where = _where(record, annotation)
            if annotation.segmentation is None:
                raise DataError(
                    "has no segmentation while other annotations of the dataset "
                    "have one; instance masks need one per object",
                    file=self.catalog.source,
                    record=where,
                    field="segmentation",
                )
            pixels = segmentation_to_mask(annotation.segmentation, height, width)
            if pixels.shape != mask.shape:
                raise DataError(
                    f"segmentation is {pixels.shape[1]}x{pixels.shape[0]} pixels, "
                    f"the image {width}x{height}",
                    file=self.catalog.source,
                    record=where,
                    field="segmentation",
                )
            mask[pixels] = 1
        return tv_tensors.Mask(torch.from_numpy(masks))


class SegmentationDataset(_CatalogDataset):
    """Images with a semantic mask: from ``mask_file``, or drawn from the segmentations.

    Mask pixels hold category ids and become class indices. Background is pixel value 0:

    - when the catalog has a category with id 0 (``0 background`` in a mask dataset's
      ``classes.txt``), pixel 0 is that category and indices follow
      :attr:`Catalog.class_index` unchanged;
    - when it has none (COCO ids start at 1), a ``"background"`` class is added at index
      0 and every category moves up by one, so background is still learned and predicted.

    :data:`~visionkit.data.records.IGNORE_INDEX` (255) stays 255, to be passed as the
    loss's ``ignore_index``. Any other value that is not a category id is an error.

    Args:
        catalog: Records with ``mask_file``, or with annotations that all have segmentations
            (later annotations are drawn on top, see
            :func:`visionkit.data.formats.masks.render_mask`).
        transforms: Applied to ``(image, mask)`` together, e.g.
            :func:`visionkit.data.transforms.segmentation_transforms`.
        cache: Keep decoded images and masks in memory (see :func:`load_dataset`).

    Returns (``__getitem__``):
        ``(image, mask)``: ``tv_tensors.Image`` ``uint8`` ``[3, H, W]`` and
        ``tv_tensors.Mask`` ``int64`` ``[H, W]`` of class indices or 255.
    """

    def __init__(
        self, catalog: Catalog, transforms: Transform | None = None, *, cache: bool = False
    ) -> None:
        super().__init__(catalog, transforms, cache=cache)
        self.adds_background = 0 not in self._class_index
        self._lookup = self._pixel_lookup()

    @property
    def names(self) -> list[str]:
        """Class names in class-index order (``"background"`` first when it was added)."""
        return ["background", *super().names] if self.adds_background else super().names

    def __getitem__(self, index: int) -> tuple[Any, tv_tensors.Mask]:
        record = self.catalog.images[index]
        image = self._image(record)
        mask = self._class_mask(record, *image.shape[-2:])
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    def _pixel_lookup(self) -> torch.Tensor:
        """``int64`` ``[256]``: pixel value -> class index, 255 -> 255, unknown -> -1."""
        lookup = torch.full((256,), -1, dtype=torch.int64)
        shift = int(self.adds_background)
        for category_id, index in self._class_index.items():
            if 0 <= category_id < IGNORE_INDEX:  # no mask pixel can hold another id
                lookup[category_id] = index + shift
        if self.adds_background:
            lookup[0] = 0
        lookup[IGNORE_INDEX] = IGNORE_INDEX
        return lookup

    def _class_mask(self, record: ImageRecord, height: int, width: int) -> tv_tensors.Mask:
        indices = self._cached("mask", record, lambda: self._read_mask(record, height, width))
        return tv_tensors.Mask(indices.long())

    def _read_mask(self, record: ImageRecord, height: int, width: int) -> torch.Tensor:
        """``uint8`` ``[H, W]`` class indices (or 255) of the record's mask."""
        path = self.catalog.mask_path(record)
        pixels = render_mask(record, height, width) if path is None else read_mask(path)
        if pixels.shape != (height, width):
            raise ImageError(
                f"mask is {pixels.shape[1]}x{pixels.shape[0]} pixels, the image {width}x{height}",
                file=path,
                record=f"image {record.id}",
                field="mask_file",
            )
        classes = self._lookup[torch.from_numpy(pixels).long()]
        unknown = classes < 0
        if unknown.any():
            values = sorted({int(v) for v in np.unique(pixels[unknown.numpy()])})
            raise DataError(
                f"mask holds values {values} that are not category ids",
                file=path or self.catalog.source,
                record=f"image {record.id}",
                field="mask_file",
            )
        return classes.to(torch.uint8)


TASKS = ("classify", "detect", "segment")


def load_dataset(
    path: str | Path,
    task: str,
    split: str | None = None,
    *,
    transforms: Transform | None = None,
    format: str | None = None,
    images: str | Path | None = None,
    verify_images: bool = True,
    cache: bool = False,
) -> ClassificationDataset | DetectionDataset | SegmentationDataset:
    """Read one split of a dataset on disk, check it, and wrap it for ``task``.

    Every record and (with ``verify_images``) every image is checked before the first
    batch, so a corrupt file or a bad label stops the run now, with a
    :class:`~visionkit.errors.DataError` naming file, record and field, rather than
    crashing it epochs later.

    Args:
        path: Dataset file or folder, in any format.
        task: ``"classify"``, ``"detect"`` or ``"segment"``.
        split: Split to read; None picks ``train`` when present.
        transforms: A ``torchvision.transforms.v2`` pipeline applied to ``(image, target)``.
        format: Dataset format; detected when None.
        images: Image folder for COCO files whose file names are not relative to the json.
        verify_images: Decode every image once up front to find truncated files.
        cache: Keep each decoded image (and semantic mask) in memory after its first read,
            so later epochs skip decoding files: ``H * W * 3`` bytes an image (390 MB for
            2,000 images of 256 px; a semantic mask adds ``H * W``), in every loader
            worker process separately. Worth it when decoding is a large share of a step,
            as for small models on a CPU.

    Raises:
        DataError: the first fault in the split (see :mod:`visionkit.data.check`).
        ConfigError: an unknown ``task``.
    """
    datasets = {
        "classify": ClassificationDataset,
        "detect": DetectionDataset,
        "segment": SegmentationDataset,
    }
    if task not in datasets:
        raise ConfigError(
            f"unknown task {task!r}; expected one of {', '.join(TASKS)}", field="task"
        )
    catalog = load_checked(path, split, format=format, images=images, verify_images=verify_images)
    return datasets[task](catalog, transforms, cache=cache)


def collate_detection(
    batch: Sequence[tuple[Any, dict[str, Any]]],
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Batch detection samples as torchvision detectors take them: lists, not stacks.

    Args:
        batch: ``(image, target)`` pairs from :class:`DetectionDataset`; images may differ
            in size.

    Returns:
        ``(images, targets)``: a list of ``[3, H, W]`` images and a list of target dicts.

    Example:
        >>> loader = DataLoader(dataset, batch_size=4, collate_fn=collate_detection)
        ... # doctest: +SKIP
    """
    return [image for image, _ in batch], [target for _, target in batch]


def annotation_area(annotation: Annotation) -> float:
    """COCO's ``area`` of an annotation: its own when given, else its box's."""
    if annotation.area is not None:
        return annotation.area
    return float(box_area(np.asarray(annotation.bbox, dtype=np.float64)))


def _where(record: ImageRecord, annotation: Annotation) -> str:
    return f"image {record.id}, annotation {annotation.id}"
