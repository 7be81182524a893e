"""One image's predictions and targets, as :class:`DetectionEvaluator` receives them, checked.

Each element is a mapping (torchvision's and torchmetrics' ``dict(boxes=, scores=, labels=)``)
or any object with those attributes (:class:`~visionkit.structures.Detections` included, by
duck typing: this module never imports torch or the structures). Values may be numpy
arrays, lists or torch tensors. Boxes arrive ``xyxy`` in absolute pixels; masks are binary
``[N, H, W]`` arrays or lists of COCO segmentations, and are kept as compressed RLE so a
long evaluation holds a few bytes per object, not a bitmap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visionkit.errors import DataError
from visionkit.metrics._coco_match import Instances
from visionkit.metrics._streaming import as_array
from visionkit.ops.masks import mask_to_rle, rle_area, segmentation_to_rle

RLE = dict[str, Any]

VOC_FIELDS = ("pred_boxes", "pred_scores", "pred_labels", "gt_boxes", "gt_labels", "gt_difficult")
"""The :class:`ImageRecord` fields that VOC evaluation takes, in ``evaluate_voc``'s order."""


@dataclass(frozen=True)
class ImageRecord:
    """One image's checked predictions and ground truth.

    Attributes:
        image_id: The id the caller gave, or None (numbered in arrival order later).
        pred_boxes: ``[N, 4]`` float64 ``xyxy`` absolute pixels.
        pred_scores: ``[N]`` float64.
        pred_labels: ``[N]`` int64 category ids.
        pred_areas: ``[N]`` float64 box area (``bbox``) or mask area (``segm``).
        gt_boxes: ``[M, 4]`` float64 ``xyxy`` absolute pixels.
        gt_labels: ``[M]`` int64 category ids.
        gt_crowd: ``[M]`` bool ``iscrowd``.
        gt_areas: ``[M]`` float64 ``area`` as given, else box or mask area.
        gt_difficult: ``[M]`` bool VOC ``difficult``.
        pred_masks: ``N`` compressed RLEs (``segm``), else None.
        gt_masks: ``M`` compressed RLEs (``segm``), else None.
    """

    image_id: int | None
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_labels: np.ndarray
    pred_areas: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_crowd: np.ndarray
    gt_areas: np.ndarray
    gt_difficult: np.ndarray
    pred_masks: list[RLE] | None = None
    gt_masks: list[RLE] | None = None


def read_image(pred: Any, target: Any, position: int, iou_type: str) -> ImageRecord:
    """Check one (prediction, target) pair and return it as an :class:`ImageRecord`.

    Args:
        pred: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``labels [N]``; ``masks`` for ``segm``;
            optional ``area [N]`` (default: box area, or mask area for ``segm``).
        target: ``boxes [M, 4]`` xyxy (optional for ``segm``), ``labels [M]``; optional
            ``iscrowd``, ``area``, ``difficult`` ``[M]``, ``image_id``, ``masks`` (needed
            for ``segm``) and ``size`` ``(height, width)`` (needed for polygon masks).
        position: Index of the image among all that the evaluator received, for messages.
        iou_type: ``"bbox"`` or ``"segm"``.

    Raises:
        DataError: A field is missing, has the wrong shape or holds non-finite values,
            a box has ``x2 < x1`` or ``y2 < y1``, or a mask cannot be read; the message
            names ``prediction <position>`` or ``target <position>`` and the field.
    """
    preds, truth = _Side(pred, f"prediction {position}"), _Side(target, f"target {position}")
    segm = iou_type == "segm"
    pred_labels = preds.vector("labels", None, integer=True)
    pred_boxes = preds.boxes(len(pred_labels), required=not segm)
    pred_masks = preds.masks(len(pred_labels)) if segm else None
    gt_labels = truth.vector("labels", None, integer=True)
    gt_boxes = truth.boxes(len(gt_labels), required=not segm)
    gt_masks = truth.masks(len(gt_labels)) if segm else None
    return ImageRecord(
        image_id=truth.image_id(),
        pred_boxes=pred_boxes,
        pred_scores=preds.vector("scores", len(pred_labels)),
        pred_labels=pred_labels,
        pred_areas=preds.vector("area", len(pred_labels), default=_areas(pred_boxes, pred_masks)),
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        gt_crowd=truth.flags("iscrowd", len(gt_labels)),
        gt_areas=truth.vector("area", len(gt_labels), default=_areas(gt_boxes, gt_masks)),
        gt_difficult=truth.flags("difficult", len(gt_labels)),
        pred_masks=pred_masks,
        gt_masks=gt_masks,
    )


def number_images(images: list[ImageRecord]) -> list[ImageRecord]:
    """Give images without an id the next free ids, in order; refuse an id given twice.

    Raises:
        DataError: Two images carry the same ``image_id``.
    """
    given = [image.image_id for image in images if image.image_id is not None]
    unique, counts = np.unique(np.array(given, dtype=np.int64), return_counts=True)
    if (counts > 1).any():
        repeated = int(unique[np.argmax(counts > 1)])
        raise DataError(
            f"image id {repeated} was given to two images",
            record=f"image {repeated}",
            field="image_id",
        )
    next_id = int(unique[-1]) + 1 if len(unique) else 0
    numbered = []
    for image in images:
        if image.image_id is None:
            image = replace(image, image_id=next_id)
            next_id += 1
        numbered.append(image)
    return numbered


def stack_images(images: list[ImageRecord]) -> tuple[Instances, Instances]:
    """All numbered images' ground truth and predictions as flat :class:`Instances`, in
    arrival order, boxes turned to COCO's ``xywh`` (``x2 - x1``)."""
    gt = Instances(
        image=_image_ids(images, "gt_labels"),
        category=_concat(images, "gt_labels", np.zeros(0, np.int64)),
        boxes=_xywh(_concat(images, "gt_boxes", np.zeros((0, 4)))),
        area=_concat(images, "gt_areas", np.zeros(0)),
        crowd=_concat(images, "gt_crowd", np.zeros(0, bool)),
        masks=_rles(images, "gt_masks"),
    )
    dets = Instances(
        image=_image_ids(images, "pred_labels"),
        category=_concat(images, "pred_labels", np.zeros(0, np.int64)),
        boxes=_xywh(_concat(images, "pred_boxes", np.zeros((0, 4)))),
        area=_concat(images, "pred_areas", np.zeros(0)),
        score=_concat(images, "pred_scores", np.zeros(0)),
        masks=_rles(images, "pred_masks"),
    )
    return gt, dets


def _concat(images: list[ImageRecord], field: str, empty: np.ndarray) -> np.ndarray:
    return np.concatenate([empty, *(getattr(image, field) for image in images)])


def _image_ids(images: list[ImageRecord], field: str) -> np.ndarray:
    """The image id of every row of ``field``, image by image."""
    ids = np.array([image.image_id for image in images], dtype=np.int64)
    return np.repeat(ids, [len(getattr(image, field)) for image in images])


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _rles(images: list[ImageRecord], field: str) -> list[RLE] | None:
    if not images or getattr(images[0], field) is None:
        return None
    return [rle for image in images for rle in getattr(image, field)]


def _areas(boxes: np.ndarray, masks: list[RLE] | None) -> np.ndarray:
    if masks is not None:
        return np.array([rle_area(m) for m in masks], dtype=np.float64)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class _Side:
    """The fields of one prediction or target element, read and checked."""

    def __init__(self, element: Any, record: str) -> None:
        self.element, self.record = element, record

    def fail(self, field: str, message: str) -> DataError:
        return DataError(message, record=self.record, field=field)

    def get(self, field: str) -> Any:
        if isinstance(self.element, Mapping):
            return self.element.get(field)
        return getattr(self.element, field, None)

    def boxes(self, length: int, *, required: bool) -> np.ndarray:
        value = self.get("boxes")
        if value is None:
            if required:
                raise self.fail("boxes", "missing")
            return np.zeros((length, 4))
        boxes = self._numbers("boxes", value)
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        if boxes.shape != (length, 4):
            raise self.fail("boxes", f"must have shape [{length}, 4], got {list(boxes.shape)}")
        inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        if len(inverted):
            raise self.fail(
                "boxes",
                f"box {inverted[0]} has x2 < x1 or y2 < y1 (xyxy expected): "
                f"{boxes[inverted[0]].tolist()}",
            )
        return boxes

    def vector(
        self, field: str, length: int | None, *, integer: bool = False, default: Any = None
    ) -> np.ndarray:
        value = self.get(field)
        if value is None:
            if default is None:
                raise self.fail(field, "missing")
            return default
        array = self._numbers(field, value)
        array = array.reshape(0) if array.size == 0 else array
        if array.ndim != 1 or (length is not None and len(array) != length):
            expected = "[N]" if length is None else f"[{length}]"
            raise self.fail(field, f"must have shape {expected}, got {list(array.shape)}")
        if integer and (array != np.round(array)).any():
            raise self.fail(field, f"must be integers, got {array[array != np.round(array)][0]}")
        return array.astype(np.int64) if integer else array

    def flags(self, field: str, length: int) -> np.ndarray:
        array = self.vector(field, length, default=np.zeros(length))
        if not np.isin(array, (0, 1)).all():
            raise self.fail(field, "must be 0 or 1 (False or True)")
        return array.astype(bool)

    def image_id(self) -> int | None:
        value = self.get("image_id")
        if value is None:
            return None
        array = self._numbers("image_id", value).reshape(-1)
        if array.shape != (1,) or array[0] != np.round(array[0]):
            raise self.fail("image_id", f"must be one integer, got {array.tolist()}")
        return int(array[0])

    def masks(self, length: int) -> list[RLE]:
        value = self.get("masks")
        if value is None:
            raise self.fail("masks", "missing (needed for iou_type='segm')")
        if isinstance(value, list | tuple) and not (value and hasattr(value[0], "shape")):
            masks = [self._segmentation(item) for item in value]
        else:
            masks = self._bitmaps(value)
        if len(masks) != length:
            raise self.fail("masks", f"has {len(masks)} masks for {length} labels")
        return masks

    def _segmentation(self, item: Any) -> RLE:
        height, width = self._size() if isinstance(item, list) else (0, 0)
        try:
            return segmentation_to_rle(item, height, width)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            raise self.fail("masks", f"not a COCO RLE or polygon list: {error}") from None

    def _size(self) -> tuple[int, int]:
        """The target's ``size`` ``(height, width)``, which polygons are rasterised at."""
        size = self.get("size")
        if size is None:
            raise self.fail("size", "(height, width) is needed to rasterise polygon masks")
        array = self._numbers("size", size).reshape(-1)
        if array.shape != (2,) or (array < 1).any():
            raise self.fail("size", f"must be (height, width), got {array.tolist()}")
        return int(array[0]), int(array[1])

    def _bitmaps(self, value: Any) -> list[RLE]:
        if isinstance(value, list | tuple):
            value = np.stack([as_array(v) for v in value])
        array = as_array(value)
        if array.ndim != 3:
            raise self.fail("masks", f"must have shape [N, H, W], got {list(array.shape)}")
        if array.dtype.kind == "f" and not np.isin(array, (0, 1)).all():
            raise self.fail("masks", "must be binary (0/1 or bool), not soft scores")
        return [mask_to_rle(mask) for mask in array.astype(bool)]

    def _numbers(self, field: str, value: Any) -> np.ndarray:
        try:
            array = as_array(value).astype(np.float64)
        except (TypeError, ValueError):
            raise self.fail(field, f"must be numbers, got {type(value).__name__}") from None
        if not np.isfinite(array).all():
            raise self.fail(field, "must be finite (NaN or inf found)")
        return array
