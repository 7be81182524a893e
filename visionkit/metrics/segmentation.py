"""Semantic segmentation metrics: IoU, Dice, pixel and mean accuracy, and Boundary IoU.

:class:`SegmentationMetrics` streams batches of label maps into a confusion matrix and two
per-class boundary counts, so adding batches one at a time equals adding them at once, and
``compute()`` sums the state over ``torch.distributed`` processes. Boundary IoU follows
Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation Evaluation"
(CVPR 2021) and its reference code: the boundary of a mask is the mask minus its erosion by
a 3x3 square applied ``d`` times, ``d = max(1, round(dilation * image diagonal))``, with the
image border counting as background.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from visionkit.errors import ConfigError
from visionkit.metrics._streaming import (
    as_array,
    check_labels,
    divide,
    nan_mean,
    sum_across_processes,
)


class SegmentationMetrics:
    """Streaming semantic segmentation metrics over label maps.

    Classes absent from both the ground truth and the predictions of every image seen get
    NaN per-class values and are left out of the means (``miou``, ``mdice``, ...).
    torchmetrics' ``MulticlassJaccardIndex`` reports 0 for such a class with
    ``average=None`` and leaves it out of ``average="macro"`` too, so the means agree.

    Pixels whose target is ``ignore_index`` count nowhere, and they do not make boundaries
    either: a pixel is inside its class's region when every non-ignored pixel within ``d``
    of it has its label, so predictions on ignored pixels change no result.

    ``compute()`` is collective under an initialised ``torch.distributed`` with two or more
    processes: call it on every process; each returns the metrics of all their batches.

    Args:
        num_classes: Number of classes ``C``; labels are ``0 .. C-1``.
        ignore_index: Target value of unlabelled pixels (not a class id), or None.
        boundary_dilation: Boundary width as a fraction of the image diagonal (0.02 as in
            the Boundary IoU paper); at least one pixel. None skips Boundary IoU (its
            values are then NaN), which makes :meth:`update` several times faster.

    Example:
        >>> metrics = SegmentationMetrics(2)
        >>> target = np.zeros((1, 4, 4), int); target[0, :, 2:] = 1
        >>> metrics.update(target, target)
        >>> metrics.compute()["miou"]
        1.0
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = 255,
        boundary_dilation: float | None = 0.02,
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"must be at least 1, got {num_classes}", field="num_classes")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ConfigError(
                f"{ignore_index} is a class id; use a value outside [0, {num_classes})",
                field="ignore_index",
            )
        if boundary_dilation is not None and not boundary_dilation >= 0:
            raise ConfigError(f"must be >= 0, got {boundary_dilation}", field="boundary_dilation")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_dilation = boundary_dilation
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._boundary_intersection = np.zeros(self.num_classes, np.int64)
        self._boundary_union = np.zeros(self.num_classes, np.int64)
        self._images = 0

    def update(self, preds: Any, targets: Any) -> None:
        """Add one batch.

        Args:
            preds: Integer labels ``[B, H, W]``, or scores ``[B, C, H, W]`` (logits or
                probabilities; the label is the argmax over ``C``, the lowest index on a
                tie; taking it on the device first saves copying). numpy arrays or torch
                tensors. Predictions are class ids only, never ``ignore_index``.
            targets: Integer labels ``[B, H, W]`` in ``[0, C)`` or ``ignore_index``.

        Raises:
            ConfigError: Shapes or dtypes do not fit.
            DataError: A label is out of range; the message names the image and the value.
        """
        targets = as_array(targets)
        preds = self._pred_labels(as_array(preds), targets.shape)
        check_labels(
            targets,
            self.num_classes,
            field="target",
            record="image",
            first_index=self._images,
            ignore_index=self.ignore_index,
        )
        check_labels(
            preds, self.num_classes, field="pred", record="image", first_index=self._images
        )
        valid = (
            np.ones(targets.shape, bool)
            if self.ignore_index is None
            else targets != self.ignore_index
        )
        self._confusion += _confusion_matrix(targets[valid], preds[valid], self.num_classes)
        if self.boundary_dilation is not None:
            width = boundary_width(targets.shape[1], targets.shape[2], self.boundary_dilation)
            intersection, union = _boundary_counts(preds, targets, valid, self.num_classes, width)
            self._boundary_intersection += intersection
            self._boundary_union += union
        self._images += len(targets)

    def _pred_labels(self, preds: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
        if len(target_shape) != 3:
            raise ConfigError(
                f"must have shape [B, H, W], got {list(target_shape)}", field="target"
            )
        if preds.ndim == 4:
            if preds.shape[1] != self.num_classes:
                raise ConfigError(
                    f"scores [B, C, H, W] have C = {preds.shape[1]}, expected {self.num_classes}",
                    field="pred",
                )
            preds = preds.argmax(axis=1)
        if preds.shape != target_shape:
            raise ConfigError(
                f"shape {list(preds.shape)} does not match target {list(target_shape)}",
                field="pred",
            )
        return preds

    def compute(self) -> dict[str, Any]:
        """The metrics of every batch added since the last :meth:`reset`, on a 0-1 scale.

        Returns:
            ``miou``, ``mdice``, ``mean_accuracy`` (mean per-class recall over classes in
            the ground truth), ``pixel_accuracy``, ``mboundary_iou`` (floats; NaN with no
            pixels); ``iou_per_class``, ``dice_per_class``, ``boundary_iou_per_class``
            (float64 ``[C]``); ``confusion_matrix`` (int64 ``[C, C]``, rows true, columns
            predicted, ignored pixels left out).
        """
        state = sum_across_processes(
            {
                "confusion": self._confusion,
                "boundary_intersection": self._boundary_intersection,
                "boundary_union": self._boundary_union,
            }
        )
        confusion = state["confusion"]
        hits, true, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
        iou = divide(hits, true + predicted - hits)
        dice = divide(2 * hits, true + predicted)
        boundary_iou = divide(state["boundary_intersection"], state["boundary_union"])
        return {
            "miou": nan_mean(iou),
            "mdice": nan_mean(dice),
            "mboundary_iou": nan_mean(boundary_iou),
            "pixel_accuracy": float(divide(hits.sum(), confusion.sum())),
            "mean_accuracy": nan_mean(divide(hits, true)),
            "iou_per_class": iou,
            "dice_per_class": dice,
            "boundary_iou_per_class": boundary_iou,
            "confusion_matrix": confusion,
        }


def segmentation_metrics(
    preds: Any,
    targets: Any,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    boundary_dilation: float = 0.02,
) -> dict[str, Any]:
    """One-shot :class:`SegmentationMetrics`: the metrics of one batch ``[B, H, W]``."""
    metrics = SegmentationMetrics(
        num_classes, ignore_index=ignore_index, boundary_dilation=boundary_dilation
    )
    metrics.update(preds, targets)
    return metrics.compute()


def boundary_iou(pred: Any, target: Any, *, boundary_dilation: float = 0.02) -> float:
    """Boundary IoU of two binary masks ``[H, W]`` (Cheng et al. 2021).

    Returns:
        ``|B(pred) & B(target)| / |B(pred) | B(target)|`` where ``B`` is the mask minus its
        erosion; 0 when both masks are empty, as :func:`visionkit.ops.mask_iou`.

    Example:
        >>> square = np.zeros((10, 10), bool); square[2:8, 2:8] = True
        >>> boundary_iou(square, square)
        1.0
    """
    pred, target = as_array(pred).astype(bool), as_array(target).astype(bool)
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ConfigError(
            f"masks must be [H, W] of one size, got {list(pred.shape)} and {list(target.shape)}"
        )
    width = boundary_width(*target.shape, boundary_dilation)
    labels = np.stack([pred, target]).astype(np.int64)[:, None]
    intersection, union = _boundary_counts(*labels, np.ones_like(labels[0], bool), 2, width)
    return float(divide(intersection[1], union[1], empty=0.0))


def boundary_width(height: int, width: int, dilation: float) -> int:
    """Boundary width ``d`` in pixels: ``max(1, round(dilation * image diagonal))``."""
    return max(1, round(dilation * math.hypot(height, width)))


def _confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``[C, C]`` counts of (true, predicted) label pairs, by one ``np.bincount``."""
    pairs = targets.astype(np.int64) * num_classes + preds.astype(np.int64)
    counts = np.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _boundary_counts(
    preds: np.ndarray, targets: np.ndarray, valid: np.ndarray, num_classes: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection and union of the predicted and true boundaries ``[C]``.

    Only ``valid`` pixels count; ``width`` is the boundary width ``d`` in pixels.
    """
    true_edge = _boundaries(targets, valid, width)
    pred_edge = _boundaries(preds, valid, width)
    shared = true_edge & pred_edge & (targets == preds)
    intersection = np.bincount(targets[shared], minlength=num_classes)
    union = (
        np.bincount(targets[true_edge], minlength=num_classes)
        + np.bincount(preds[pred_edge], minlength=num_classes)
        - intersection
    )
    return intersection, union


def _boundaries(labels: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """bool ``[B, H, W]``: valid pixels on the boundary band of their own class.

    Eroding each class's mask ``d`` times by a 3x3 square keeps the pixels whose
    ``(2d+1)``-square window lies inside the mask, so the boundary of every class at once
    is where the window's minimum and maximum label differ. Images are stacked into one
    tall image with a one-pixel frame of -1 around each: the frame is the image border,
    which counts as background, and keeps the windows of neighbouring images apart.
    Invalid pixels hold +inf for the minimum and -inf for the maximum, so they never
    decide either. float32 holds every label below 2**24 exactly.
    """
    import cv2  # classical-CV dependency, only needed for boundaries

    big = np.finfo(np.float32).max
    values = labels.astype(np.float32)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    low = cv2.erode(_framed(np.where(valid, values, big)), kernel)
    high = cv2.dilate(_framed(np.where(valid, values, -big)), kernel)
    batch, height, image_width = labels.shape
    inside = (low == high).reshape(batch, height + 2, image_width + 2)[:, 1:-1, 1:-1]
    return valid & ~inside


def _framed(images: np.ndarray) -> np.ndarray:
    """``[B, H, W]`` framed with -1 and stacked into one ``[B * (H + 2), W + 2]`` image."""
    framed = np.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    return np.ascontiguousarray(framed.reshape(-1, framed.shape[2]))
