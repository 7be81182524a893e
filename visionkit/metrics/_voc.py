"""PASCAL VOC detection AP: the devkit's matching and its 11-point and all-point rules.

Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010, and the
devkit's ``VOCevaldet``/``VOCap`` as ported in Detectron2's ``pascal_voc_evaluation.py``.
Boxes are continuous xyxy absolute pixels, so IoU has no legacy ``+1`` on widths and heights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionkit.errors import ConfigError
from visionkit.metrics._detection_confusion import ImageArrays, image_arrays
from visionkit.ops.boxes import box_iou

_ELEVEN_POINTS = np.arange(11) / 10
# Exactly k / 10. The Python ports of the devkit use np.arange(0.0, 1.1, 0.1), whose 0.3, 0.6
# and 0.7 are a hair above those values, so a recall of exactly 0.3 (3 of 10 boxes) misses that
# point there; the published rule counts it.


@dataclass(frozen=True)
class VOCResult:
    """What :func:`evaluate_voc` measured, keyed by category id.

    Attributes:
        map: Mean of ``ap_per_class`` over the classes with at least one non-difficult
            ground-truth box; NaN when there is none.
        ap_per_class: AP of every class seen in the ground truth or the predictions, in
            ``[0, 1]``; NaN for a class without non-difficult ground truth (AP is undefined).
        precision: Per class, ``[K]`` precision after each of its ``K`` counted detections,
            by decreasing score (detections matched to difficult boxes are not counted).
        recall: Per class, ``[K]`` recall at the same points; NaN for a class without
            non-difficult ground truth.
    """

    map: float
    ap_per_class: dict[int, float]
    precision: dict[int, np.ndarray]
    recall: dict[int, np.ndarray]


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """Average precision of one precision-recall curve, by the VOC 2007 or VOC 2010+ rule.

    Args:
        recall: ``[K]`` recall after each ranked detection (non-decreasing).
        precision: ``[K]`` precision at the same points.
        use_07_metric: True for VOC 2007's 11-point rule: the mean over ``t`` in ``0, 0.1,
            ..., 1`` of the highest precision at recall ``>= t`` (0 where recall never gets
            there). False for the all-point rule of VOC 2010 and later: the area under the
            curve after each precision is raised to the highest precision at any higher recall.

    Returns:
        AP in ``[0, 1]``; 0 for an empty curve.

    Raises:
        ConfigError: ``recall`` and ``precision`` are not 1-D of one length.

    Example:
        >>> voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]), use_07_metric=False)
        0.8333333333333333
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ConfigError(
            f"recall and precision must be 1-D of one length, got {list(recall.shape)} "
            f"and {list(precision.shape)}",
            field="precision",
        )
    if use_07_metric:
        reached = recall[None, :] >= _ELEVEN_POINTS[:, None]
        return float(np.where(reached, precision[None, :], 0.0).max(axis=1, initial=0.0).mean())
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def evaluate_voc(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    gt_difficult: Sequence[np.ndarray],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
) -> VOCResult:
    """PASCAL VOC AP per class and its mean, with the devkit's matching of detections.

    Per class, the detections of all images are ranked by decreasing score (ties keep image
    order, then input order). Each is compared with the ground-truth boxes of its image and
    class and takes the one of largest IoU (the first on ties). If that IoU is above
    ``iou_threshold``: a difficult box makes the detection neither true nor false positive
    (it is not counted); otherwise the box's first detection is a true positive and any
    later one a false positive (a duplicate). A lower IoU, or no box, is a false positive.
    Recall divides by the class's non-difficult boxes; a class without any has no AP and is
    left out of the mean.

    Args:
        pred_boxes: Per image, ``[N, 4]`` detections, xyxy absolute pixels.
        pred_scores: Per image, ``[N]`` confidences.
        pred_labels: Per image, ``[N]`` integer category ids.
        gt_boxes: Per image, ``[M, 4]`` ground-truth boxes, xyxy absolute pixels.
        gt_labels: Per image, ``[M]`` integer category ids.
        gt_difficult: Per image, ``[M]`` bool: VOC's ``difficult`` flag.
        iou_threshold: A detection matches only with IoU strictly above this (VOC: 0.5).
        use_07_metric: VOC 2007's 11-point AP instead of the all-point AP (see :func:`voc_ap`).

    Returns:
        :class:`VOCResult` over the classes found in the ground truth or the predictions.

    Raises:
        ConfigError: sequences of different lengths, or an image's arrays of a wrong shape;
            the message names the image and the field.

    Example:
        >>> result = evaluate_voc(
        ...     [np.array([[0, 0, 10, 10], [50, 50, 60, 60]])], [np.array([0.9, 0.8])],
        ...     [np.array([3, 3])], [np.array([[0, 0, 10, 11]])], [np.array([3])],
        ...     [np.array([False])])
        >>> result.map, result.precision[3].tolist(), result.recall[3].tolist()
        (1.0, [1.0, 0.5], [1.0, 1.0])
    """
    if not 0 <= iou_threshold <= 1:
        raise ConfigError(f"must be in [0, 1], got {iou_threshold}", field="iou_threshold")
    images, difficult = _checked_images(
        pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels, gt_difficult
    )
    labels, tp, counted = _rank_detections(images, difficult, iou_threshold)
    all_gt_labels = np.concatenate([np.zeros(0, np.int64), *(i.gt_labels for i in images)])
    positives = all_gt_labels[~np.concatenate([np.zeros(0, bool), *difficult])]
    ap, precision, recall = {}, {}, {}
    for label in np.union1d(all_gt_labels, labels).tolist():
        hits = tp[counted & (labels == label)]
        npos = int(np.count_nonzero(positives == label))
        true_positives = np.cumsum(hits)
        precision[label] = true_positives / np.arange(1, len(hits) + 1)
        recall[label] = true_positives / npos if npos else np.full(len(hits), np.nan)
        ap[label] = float("nan")
        if npos:
            ap[label] = voc_ap(recall[label], precision[label], use_07_metric=use_07_metric)
    scored = [value for value in ap.values() if not np.isnan(value)]
    mean = float(np.mean(scored)) if scored else float("nan")
    return VOCResult(map=mean, ap_per_class=ap, precision=precision, recall=recall)


def _checked_images(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    pred_labels: Sequence[Any],
    gt_boxes: Sequence[Any],
    gt_labels: Sequence[Any],
    gt_difficult: Sequence[Any],
) -> tuple[list[ImageArrays], list[np.ndarray]]:
    """Every image's arrays checked, and its ``[M]`` bool difficult flags."""
    columns = {
        "pred_boxes": pred_boxes,
        "pred_scores": pred_scores,
        "pred_labels": pred_labels,
        "gt_boxes": gt_boxes,
        "gt_labels": gt_labels,
        "gt_difficult": gt_difficult,
    }
    count = len(pred_boxes)
    for field, column in columns.items():
        if len(column) != count:
            raise ConfigError(f"{len(column)} images, but {count} in pred_boxes", field=field)
    images, difficult = [], []
    for index, arrays in enumerate(zip(*columns.values(), strict=True)):
        record = f"image {index}"
        images.append(image_arrays(*arrays[:5], record=record))
        flags = np.asarray(arrays[5], dtype=bool)
        flags = flags.reshape(0) if flags.size == 0 else flags
        if flags.shape != images[-1].gt_labels.shape:
            raise ConfigError(
                f"expected shape {list(images[-1].gt_labels.shape)} to match the boxes, got "
                f"{list(flags.shape)}",
                record=record,
                field="gt_difficult",
            )
        difficult.append(flags)
    return images, difficult


def _rank_detections(
    images: list[ImageArrays], difficult: list[np.ndarray], iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All detections by decreasing score: ``(labels, is_tp, is_counted)``, each ``[D]``.

    A detection is counted unless its best box is difficult; a counted one is a true
    positive when it is the first (best-scored) detection whose best box is that box.
    """
    boxes, hard, offset = [], [], 0  # boxes: each detection's best box, as a dataset-wide index
    for image, flags in zip(images, difficult, strict=True):
        best, overlap = _best_boxes(image)
        matched = overlap > iou_threshold
        boxes.append(np.where(matched, best + offset, -1))
        hard.append(matched & flags[best] if len(flags) else np.zeros(len(best), bool))
        offset += len(flags)
    scores = np.concatenate([np.zeros(0), *(i.pred_scores for i in images)])
    order = np.argsort(-scores, kind="stable")
    labels = np.concatenate([np.zeros(0, np.int64), *(i.pred_labels for i in images)])[order]
    boxes = np.concatenate([np.zeros(0, np.int64), *boxes])[order]
    counted = ~np.concatenate([np.zeros(0, bool), *hard])[order]
    candidates = np.flatnonzero(counted & (boxes >= 0))
    _, first = np.unique(boxes[candidates], return_index=True)
    tp = np.zeros(len(order), bool)
    tp[candidates[first]] = True
    return labels, tp, counted


def _best_boxes(image: ImageArrays) -> tuple[np.ndarray, np.ndarray]:
    """Per detection, the index of the same-class box of largest IoU and that IoU (-1 if none)."""
    count = len(image.pred_boxes)
    if len(image.gt_boxes) == 0:
        return np.zeros(count, np.int64), np.full(count, -1.0)
    iou = box_iou(image.pred_boxes, image.gt_boxes)
    iou = np.where(image.pred_labels[:, None] == image.gt_labels[None, :], iou, -1.0)
    best = iou.argmax(axis=1)
    return best, iou[np.arange(count), best]
