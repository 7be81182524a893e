"""The detection confusion matrix with a background class, as Ultralytics' ``val`` draws it.

Also home of :func:`image_arrays`, the check that every per-image detection metric here
(this matrix, VOC AP) runs on what the caller passed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from visionkit.errors import ConfigError
from visionkit.ops.boxes import box_iou


class ImageArrays(NamedTuple):
    """One image's detections and ground truth, checked: float64 boxes, int64 labels."""

    pred_boxes: np.ndarray  # [N, 4] xyxy
    pred_scores: np.ndarray  # [N]
    pred_labels: np.ndarray  # [N]
    gt_boxes: np.ndarray  # [M, 4] xyxy
    gt_labels: np.ndarray  # [M]


def image_arrays(
    pred_boxes: Any,
    pred_scores: Any,
    pred_labels: Any,
    gt_boxes: Any,
    gt_labels: Any,
    *,
    record: str | None = None,
) -> ImageArrays:
    """Check one image's arrays and return them as numpy.

    Args:
        pred_boxes: ``[N, 4]`` predicted boxes, xyxy absolute pixels (``[0]`` or ``[]`` for none).
        pred_scores: ``[N]`` confidences.
        pred_labels: ``[N]`` integer labels (integral floats are accepted).
        gt_boxes: ``[M, 4]`` ground-truth boxes, xyxy absolute pixels.
        gt_labels: ``[M]`` integer labels.
        record: Names the image in error messages (``"image 3"``).

    Returns:
        :class:`ImageArrays` with float64 boxes and scores and int64 labels.

    Raises:
        ConfigError: a wrong shape, lengths that differ, non-finite values or
            non-integer labels; the message names the field.
    """
    pred_boxes = _boxes(pred_boxes, record, "pred_boxes")
    gt_boxes = _boxes(gt_boxes, record, "gt_boxes")
    return ImageArrays(
        pred_boxes,
        _vector(pred_scores, len(pred_boxes), record, "pred_scores"),
        labels_vector(pred_labels, len(pred_boxes), record, "pred_labels"),
        gt_boxes,
        labels_vector(gt_labels, len(gt_boxes), record, "gt_labels"),
    )


def labels_vector(values: Any, length: int, record: str | None, field: str) -> np.ndarray:
    """``[length]`` int64 labels from integer or integral float values, else ConfigError."""
    array = _vector(values, length, record, field)
    fractional = array[array != np.round(array)]
    if fractional.size:
        raise ConfigError(
            f"labels must be integers, got {fractional[0]}", record=record, field=field
        )
    return array.astype(np.int64)


def _boxes(values: Any, record: str | None, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ConfigError(
            f"boxes must have shape [N, 4], got {list(array.shape)}", record=record, field=field
        )
    if not np.isfinite(array).all():
        raise ConfigError("boxes must be finite", record=record, field=field)
    return array


def _vector(values: Any, length: int, record: str | None, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 and length == 0:
        return array.reshape(0)
    if array.shape != (length,):
        raise ConfigError(
            f"expected shape [{length}] to match the boxes, got {list(array.shape)}",
            record=record,
            field=field,
        )
    if not np.isfinite(array).all():
        raise ConfigError("values must be finite", record=record, field=field)
    return array


class DetectionConfusionMatrix:
    """Counts of predicted class against true class over a dataset, background included.

    The matrix is ``[num_classes + 1, num_classes + 1]`` and laid out as Ultralytics':
    ``matrix[predicted, true]`` (rows are predicted classes, columns true classes) with
    background as the last row and column. A detection matched to a ground-truth box adds
    1 at ``[its label, the box's label]``; an unmatched ground-truth box (a miss) adds 1 at
    ``[background, its label]``; an unmatched detection (a false alarm) adds 1 at ``[its
    label, background]``. ``matrix[background, background]`` stays 0.

    Matching, per image, follows Ultralytics' ``ConfusionMatrix.process_batch``:
    detections scoring below ``conf`` are dropped; pairs with IoU above ``iou_threshold``
    are candidates whatever their classes; each detection keeps its best ground-truth box,
    then each ground-truth box keeps its best detection among those (ties go to the lower
    index). A detection that loses its best box therefore stays unmatched even if it
    overlaps another box. Two differences from the references: a detection scoring exactly
    ``conf`` is kept (Ultralytics keeps ``score > conf``; supervision keeps it too), and
    supervision's ``ConfusionMatrix`` matches greedily and prefers same-class pairs, so it
    can differ from this matrix (and from Ultralytics') where boxes overlap several others.

    Args:
        num_classes: Number of object classes; labels are ``0 .. num_classes - 1``.
        conf: Detections scoring below this are ignored.
        iou_threshold: A pair matches only with IoU strictly above this.

    Example:
        >>> cm = DetectionConfusionMatrix(2)
        >>> cm.update([[0, 0, 10, 10]], [0.9], [1], [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])
        >>> cm.matrix  # the first box was called class 1; the second box was missed
        array([[0, 0, 0],
               [1, 0, 0],
               [0, 1, 0]])
    """

    def __init__(self, num_classes: int, *, conf: float = 0.25, iou_threshold: float = 0.45):
        if int(num_classes) != num_classes or num_classes < 1:
            raise ConfigError(f"must be a positive integer, got {num_classes}", field="num_classes")
        if not 0 <= iou_threshold <= 1:
            raise ConfigError(f"must be in [0, 1], got {iou_threshold}", field="iou_threshold")
        self.num_classes = int(num_classes)
        self.conf = float(conf)
        self.iou_threshold = float(iou_threshold)
        self._matrix = np.zeros((self.num_classes + 1,) * 2, dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the int64 counts, ``[num_classes + 1, num_classes + 1]``, ``[pred, true]``."""
        return self._matrix.copy()

    def update(
        self, pred_boxes: Any, pred_scores: Any, pred_labels: Any, gt_boxes: Any, gt_labels: Any
    ) -> None:
        """Add one image's detections and ground truth to the counts.

        Args:
            pred_boxes: ``[N, 4]`` detections, xyxy absolute pixels; ``N`` may be 0.
            pred_scores: ``[N]`` confidences.
            pred_labels: ``[N]`` class indices in ``0 .. num_classes - 1``.
            gt_boxes: ``[M, 4]`` ground-truth boxes, xyxy absolute pixels; ``M`` may be 0.
            gt_labels: ``[M]`` class indices in ``0 .. num_classes - 1``.

        Raises:
            ConfigError: wrong shapes, lengths that differ, or labels out of range; the
                message names the field. The counts are unchanged then.
        """
        image = image_arrays(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels)
        for field in ("pred_labels", "gt_labels"):
            self._check_range(getattr(image, field), field)
        keep = image.pred_scores >= self.conf
        pred_boxes, pred_labels = image.pred_boxes[keep], image.pred_labels[keep]
        gt_index, pred_index = self._match(image.gt_boxes, pred_boxes)
        background = self.num_classes
        np.add.at(self._matrix, (pred_labels[pred_index], image.gt_labels[gt_index]), 1)
        missed = np.delete(image.gt_labels, gt_index)
        np.add.at(self._matrix, (np.full_like(missed, background), missed), 1)
        false_alarms = np.delete(pred_labels, pred_index)
        np.add.at(self._matrix, (false_alarms, np.full_like(false_alarms, background)), 1)

    def normalized(self) -> np.ndarray:
        """The matrix divided by its column sums: each true class's share of each prediction.

        Returns:
            float64 ``[num_classes + 1, num_classes + 1]``, ``[pred, true]``; each column sums
            to 1, or is all 0 for a class that never occurred (Ultralytics' normalisation).
        """
        totals = self._matrix.sum(axis=0, keepdims=True)
        return self._matrix / np.where(totals > 0, totals, 1)

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives per class, background left out.

        Returns:
            ``(tp, fp)``, each int64 ``[num_classes]``: ``tp[c]`` detections of class ``c``
            matched to a box of class ``c``; ``fp[c]`` the other detections of class ``c``
            (matched to another class's box, or to nothing).
        """
        tp = np.diagonal(self._matrix).copy()
        fp = self._matrix.sum(axis=1) - tp
        return tp[:-1], fp[:-1]

    def _check_range(self, labels: np.ndarray, field: str) -> None:
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ConfigError(
                f"class index {bad[0]} is out of range for {self.num_classes} classes",
                field=field,
            )

    def _match(self, gt_boxes: np.ndarray, pred_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(gt, pred)`` of the matched pairs, each box in at most one pair."""
        iou = box_iou(gt_boxes, pred_boxes)
        gt_index, pred_index = np.nonzero(iou > self.iou_threshold)
        for axis in (1, 0):  # the best box of each detection, then the best of those per box
            pairs = np.stack([gt_index, pred_index])
            order = np.argsort(-iou[gt_index, pred_index], kind="stable")
            _, first = np.unique(pairs[axis, order], return_index=True)
            gt_index, pred_index = pairs[:, order[first]]
        return gt_index, pred_index
