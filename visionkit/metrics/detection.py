"""Detection metrics: COCO AP/AR equal to pycocotools', VOC AP, and the confusion matrix.

Two ways in:

- :class:`DetectionEvaluator` for a model under evaluation: ``update(preds, targets)`` once
  per batch (torchvision's and torchmetrics' list-of-dicts, or :class:`Detections`-like
  objects; numpy, lists or torch tensors), ``compute()`` at the end, across processes too.
- :func:`evaluate_coco` for files: a COCO dataset and a COCO results list (paths or parsed
  JSON), checked record by record.

The COCO protocol reproduces pycocotools' ``COCOeval`` (``useCats=1``, 10 IoU thresholds,
101 recall points, 4 area ranges, ``maxDets`` 1/10/100) to the last bit, on vectorised numpy
instead of a Python loop per image, which makes it many times faster than pycocotools and
faster than its C++ port faster-coco-eval (see ``benchmarks/coco_eval.py``). Results use
torchmetrics' key names on a 0-1 scale, -1 where a value is undefined (no ground truth), as
pycocotools does. Importing this module does not import torch.

Example:
    >>> evaluator = DetectionEvaluator()
    >>> evaluator.update(
    ...     [{"boxes": [[10, 10, 50, 50]], "scores": [0.9], "labels": [1]}],
    ...     [{"boxes": [[12, 10, 50, 52]], "labels": [1]}],
    ... )
    >>> round(evaluator.compute()["map_50"], 3)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import ConfigError
from visionkit.metrics._coco_accumulate import PrecisionRecallCurves, accumulate, summarize
from visionkit.metrics._coco_match import Instances, match
from visionkit.metrics._coco_records import (
    GroundTruth,
    load_json,
    read_ground_truth,
    read_results,
)
from visionkit.metrics._detection_confusion import DetectionConfusionMatrix
from visionkit.metrics._detection_inputs import (
    VOC_FIELDS,
    ImageRecord,
    number_images,
    read_image,
    stack_images,
)
from visionkit.metrics._streaming import gather_across_processes
from visionkit.metrics._voc import evaluate_voc

__all__ = [
    "IOU_TYPES",
    "PROTOCOLS",
    "DetectionConfusionMatrix",
    "DetectionEvaluator",
    "PrecisionRecallCurves",
    "evaluate_coco",
    "evaluate_coco_curves",
]

IOU_TYPES = ("bbox", "segm")
"""What the IoU is taken on: boxes, or instance masks."""

PROTOCOLS = ("coco", "voc07", "voc")
"""COCO AP/AR; VOC 2007 11-point AP at IoU 0.5; VOC 2010+ all-point AP at IoU 0.5."""

COCO_MAX_DETECTIONS = (1, 10, 100)
"""COCO's ``maxDets``: detection limits per image and category."""


class DetectionEvaluator:
    """Streaming COCO (or VOC) evaluation of detections, image by image.

    Args:
        iou_type: ``"bbox"`` or ``"segm"`` (predictions and targets then carry ``masks``).
        protocol: ``"coco"`` (AP/AR as pycocotools), ``"voc07"`` or ``"voc"`` (VOC AP at
            IoU 0.5 with the 11-point or all-point rule, ``bbox`` only).
        max_detection_thresholds: COCO's ``maxDets``: per image and category, detections
            beyond the last are not evaluated; ``mar_<n>`` is reported for each.

    ``update(preds, targets)`` takes one element per image. A prediction has ``boxes [N, 4]``
    (``xyxy`` absolute pixels), ``scores [N]``, ``labels [N]`` (category ids), for
    ``segm`` ``masks`` (``[N, H, W]`` binary, or N COCO RLE dicts), and optionally
    ``area [N]``, which decides whether an unmatched detection counts in an area range
    (default: box area, or mask area for ``segm``, as torchmetrics; pycocotools gives the
    detections of a results file that carry a ``bbox`` its ``w * h``, masks or not). A
    target has ``boxes [M, 4]`` and ``labels [M]``, optionally ``iscrowd [M]``, ``area
    [M]`` (default: box area, or mask area for ``segm``, as torchmetrics), ``difficult [M]``
    (VOC), ``masks`` (binary, or COCO RLE / polygon segmentations with ``size``
    ``(height, width)`` for polygons) and ``image_id``. Images without ``image_id`` are
    numbered in arrival order (after the largest given id). Categories are the union of the
    labels seen.

    ``compute()`` evaluates everything received since the last ``reset()``; under an
    initialised ``torch.distributed`` group of two or more processes it gathers every
    process's images first (collective: all processes must call it), which gives exactly
    the single-process result when images carry their ``image_id``.

    Attributes:
        curves: The :class:`PrecisionRecallCurves` of the last COCO ``compute()``, else None.

    Example:
        >>> evaluator = DetectionEvaluator(iou_type="bbox")
        >>> evaluator.update([{"boxes": [[0, 0, 10, 10]], "scores": [0.8], "labels": [3]}],
        ...                  [{"boxes": [[0, 0, 10, 10]], "labels": [3], "image_id": 42}])
        >>> result = evaluator.compute()
        >>> round(result["map"], 6), result["classes"]
        (1.0, [3])
    """

    def __init__(
        self,
        *,
        iou_type: str = "bbox",
        protocol: str = "coco",
        max_detection_thresholds: Sequence[int] = COCO_MAX_DETECTIONS,
    ) -> None:
        self.iou_type, self.protocol = iou_type, protocol
        self.max_detection_thresholds = _checked_options(
            iou_type, protocol, max_detection_thresholds
        )
        self.curves: PrecisionRecallCurves | None = None
        self._images: list[ImageRecord] = []

    def reset(self) -> None:
        """Forget every image received, to start a new evaluation."""
        self._images = []
        self.curves = None

    def update(self, preds: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add one batch: ``preds[i]`` and ``targets[i]`` belong to the same image.

        Raises:
            ConfigError: ``preds`` and ``targets`` differ in length.
            DataError: An element is malformed; the message names ``prediction <i>`` or
                ``target <i>`` (``i`` counts images since the last reset) and the field.
        """
        if len(preds) != len(targets):
            raise ConfigError(
                f"got {len(preds)} predictions for {len(targets)} targets: one each per image",
                field="preds",
            )
        start = len(self._images)
        self._images += [
            read_image(pred, target, start + i, self.iou_type)
            for i, (pred, target) in enumerate(zip(preds, targets, strict=True))
        ]

    def compute(self) -> dict[str, Any]:
        """Evaluate every image received (on every process) and return the metrics.

        Returns:
            For ``coco``: ``map, map_50, map_75, map_small, map_medium, map_large,
            mar_<n>`` for each detection limit, ``mar_small, mar_medium, mar_large``
            (floats, -1 when undefined), ``map_per_class`` and ``mar_<last>_per_class``
            (lists aligned with ``classes``) and ``classes`` (sorted category ids). For
            ``voc07``/``voc``: ``map_50``, ``map_per_class`` and ``classes`` (-1 for a class
            without non-difficult ground truth).

        Raises:
            DataError: Two images were given the same ``image_id``.
        """
        images = number_images(_gather(self._images))
        if self.protocol != "coco":
            images = sorted(images, key=lambda image: image.image_id)
            per_image = ([getattr(image, field) for image in images] for field in VOC_FIELDS)
            return _voc_metrics(*per_image, protocol=self.protocol)
        gt, dets = stack_images(images)
        image_ids = np.sort([image.image_id for image in images]).astype(np.int64)
        classes = np.union1d(gt.category, dets.category)
        self.curves = _coco_curves(gt, dets, image_ids, classes, self.max_detection_thresholds)
        return summarize(self.curves)


def evaluate_coco(
    gt: dict[str, Any] | str | Path,
    predictions: list[dict[str, Any]] | str | Path,
    *,
    iou_type: str = "bbox",
    protocol: str = "coco",
    max_detection_thresholds: Sequence[int] = COCO_MAX_DETECTIONS,
) -> dict[str, Any]:
    """Evaluate COCO results against a COCO dataset: the numbers of pycocotools' ``COCOeval``.

    Args:
        gt: A COCO dataset dict (``images``, ``categories``, ``annotations`` with ``xywh``
            ``bbox``, ``area``, ``iscrowd``; ``segmentation`` for ``segm``), or its JSON path.
            Every image and category of the dataset is evaluated.
        predictions: A COCO results list (``image_id``, ``category_id``, ``bbox`` ``xywh``,
            ``score``; ``segmentation`` for ``segm``), or its JSON path.
        iou_type: ``"bbox"`` or ``"segm"``.
        protocol: ``"coco"``, or ``"voc07"``/``"voc"`` for VOC AP at IoU 0.5 (annotations
            may carry ``"difficult": 1``).
        max_detection_thresholds: COCO's ``maxDets``.

    Returns:
        The dict of :meth:`DetectionEvaluator.compute`, with ``classes`` the dataset's
        category ids.

    Raises:
        DataError: A file is missing or not JSON, or a record is malformed: the message
            names the file, the record (``prediction 17``, ``annotation 5``) and the field.
            Unlike pycocotools, a prediction for an image or category that is not in the
            dataset is an error, not silently skipped.

    Example:
        >>> dataset = {"images": [{"id": 1, "width": 64, "height": 64}],
        ...            "categories": [{"id": 7, "name": "cat"}],
        ...            "annotations": [{"id": 1, "image_id": 1, "category_id": 7,
        ...                             "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}
        >>> results = [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.9}]
        >>> round(evaluate_coco(dataset, results)["map"], 6)
        1.0
    """
    max_dets = _checked_options(iou_type, protocol, max_detection_thresholds)
    truth, dets = _read_files(gt, predictions, iou_type)
    if protocol != "coco":
        return _voc_from_instances(truth.objects, truth.difficult, dets, truth.image_ids, protocol)
    curves = _coco_curves(truth.objects, dets, truth.image_ids, truth.category_ids, max_dets)
    return summarize(curves)


def evaluate_coco_curves(
    gt: dict[str, Any] | str | Path,
    predictions: list[dict[str, Any]] | str | Path,
    *,
    iou_type: str = "bbox",
    max_detection_thresholds: Sequence[int] = COCO_MAX_DETECTIONS,
) -> PrecisionRecallCurves:
    """What :func:`evaluate_coco` summarises: pycocotools' precision and recall arrays.

    Takes the arguments of :func:`evaluate_coco` (COCO protocol only) and returns the
    :class:`PrecisionRecallCurves`, for precision-recall plots or custom summaries.
    """
    max_dets = _checked_options(iou_type, "coco", max_detection_thresholds)
    truth, dets = _read_files(gt, predictions, iou_type)
    return _coco_curves(truth.objects, dets, truth.image_ids, truth.category_ids, max_dets)


def _read_files(gt: Any, predictions: Any, iou_type: str) -> tuple[GroundTruth, Instances]:
    """Load (if paths), check and convert a COCO dataset and results list."""
    dataset, gt_file = load_json(gt, "ground-truth")
    results, results_file = load_json(predictions, "predictions")
    truth = read_ground_truth(dataset, file=gt_file, iou_type=iou_type)
    return truth, read_results(results, truth, file=results_file, iou_type=iou_type)


def _checked_options(iou_type: str, protocol: str, max_dets: Sequence[int]) -> tuple[int, ...]:
    """Validate the options; return the detection limits ascending, as pycocotools sorts them."""
    if iou_type not in IOU_TYPES:
        raise ConfigError(f"must be one of {IOU_TYPES}, got {iou_type!r}", field="iou_type")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"must be one of {PROTOCOLS}, got {protocol!r}", field="protocol")
    if protocol != "coco" and iou_type != "bbox":
        raise ConfigError(f"VOC AP is defined on boxes only, got {iou_type!r}", field="iou_type")
    limits = tuple(sorted(int(m) for m in max_dets))
    if not limits or limits[0] < 1 or len(set(limits)) != len(limits):
        raise ConfigError(
            f"must be distinct positive integers, got {list(max_dets)}",
            field="max_detection_thresholds",
        )
    return limits


def _coco_curves(
    gt: Instances,
    dets: Instances,
    image_ids: np.ndarray,
    classes: np.ndarray,
    max_dets: tuple[int, ...],
) -> PrecisionRecallCurves:
    """Match and accumulate over the sorted ``image_ids`` and ``classes`` (category ids)."""
    matches = match(gt, dets, image_ids, classes, max_dets[-1])
    return accumulate(matches, dets.score[matches.kept], classes, max_dets)


def _voc_from_instances(
    gt: Instances, difficult: np.ndarray, dets: Instances, image_ids: np.ndarray, protocol: str
) -> dict[str, Any]:
    """VOC AP of flat COCO-file instances: cut per image (sorted ids), boxes back to xyxy."""
    count = len(image_ids)
    pred_image, gt_image = (
        np.searchsorted(image_ids, dets.image),
        np.searchsorted(image_ids, gt.image),
    )
    preds = _split(pred_image, count, _xyxy(dets.boxes), dets.score, dets.category)
    truth = _split(gt_image, count, _xyxy(gt.boxes), gt.category, difficult)
    return _voc_metrics(*preds, *truth, protocol=protocol)


def _voc_metrics(*per_image: list[np.ndarray], protocol: str) -> dict[str, Any]:
    """Call :func:`~visionkit.metrics._voc.evaluate_voc` on per-image arrays (its argument
    order) and report it with COCO's key names, -1 for a class without ground truth."""
    result = evaluate_voc(*per_image, use_07_metric=protocol == "voc07")
    classes = sorted(result.ap_per_class)
    return {
        "map_50": _defined(result.map),
        "map_per_class": [_defined(result.ap_per_class[c]) for c in classes],
        "classes": [int(c) for c in classes],
    }


def _defined(value: float) -> float:
    """VOC's NaN for "no ground truth" as COCO's -1, so both protocols read alike."""
    return -1.0 if np.isnan(value) else float(value)


def _xyxy(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _split(image: np.ndarray, count: int, *columns: np.ndarray) -> list[list[np.ndarray]]:
    """Each column cut into ``count`` per-image arrays, keeping the order within an image."""
    order = np.argsort(image, kind="stable")
    cuts = np.searchsorted(image[order], np.arange(1, count))
    return [np.split(column[order], cuts) for column in columns]


def _gather(images: list[ImageRecord]) -> list[ImageRecord]:
    """Every process's images, rank by rank, under an initialised ``torch.distributed``."""
    return [image for part in gather_across_processes(images) for image in part]
