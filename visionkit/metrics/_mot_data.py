"""Tracking data as plain arrays: one track set (:class:`Tracks`) and a scored pair of them.

A multi-object tracking sequence is a list of frames. In each frame the ground truth and
the tracker each give object ids and boxes; the metrics only need the ids and a
ground-truth x prediction similarity matrix per frame (box IoU by default), which is what
:class:`TrackingSequence` holds. :func:`to_dense` relabels the ids of a sequence to
contiguous 0-based integers, the form the CLEAR, Identity and HOTA modules count with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from visionkit.errors import DataError
from visionkit.ops.boxes import box_iou


@dataclass(frozen=True)
class Tracks:
    """Per-frame object ids and boxes of one track set: ground truth or a tracker's output.

    Element ``t`` of each tuple is frame ``t + 1`` in MOTChallenge numbering; a frame with
    nothing in it holds empty arrays. The constructor converts and checks its input.

    Attributes:
        ids: Per frame, int64 ``[N_t]`` object ids, unique within the frame (any integers).
        boxes: Per frame, float64 ``[N_t, 4]`` boxes, ``xyxy`` absolute pixels, finite.
        scores: Per frame, float64 ``[N_t]`` confidences (1 where the source gives none).

    Example:
        >>> tracks = Tracks(ids=[[1, 2], []], boxes=[[[0, 0, 10, 10], [5, 5, 9, 9]], []])
        >>> tracks.num_frames, tracks.num_boxes
        (2, 2)
    """

    ids: Sequence[Any]
    boxes: Sequence[Any]
    scores: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        ids = tuple(np.asarray(i, dtype=np.int64).reshape(-1) for i in self.ids)
        boxes = tuple(np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in self.boxes)
        if self.scores is None:
            scores = tuple(np.ones(len(i)) for i in ids)
        else:
            scores = tuple(np.asarray(s, dtype=np.float64).reshape(-1) for s in self.scores)
        if not len(ids) == len(boxes) == len(scores):
            raise DataError(
                f"ids, boxes and scores must cover the same number of frames, got "
                f"{len(ids)}, {len(boxes)} and {len(scores)}"
            )
        for t, (frame_ids, frame_boxes, frame_scores) in enumerate(
            zip(ids, boxes, scores, strict=True)
        ):
            _check_frame(t, frame_ids, [("boxes", frame_boxes), ("scores", frame_scores)])
            if np.any(frame_boxes[:, 2:] < frame_boxes[:, :2]):
                raise DataError(
                    "boxes must be xyxy with x2 >= x1 and y2 >= y1",
                    record=f"frame {t + 1}",
                    field="boxes",
                )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @property
    def num_frames(self) -> int:
        """Number of frames, empty ones included."""
        return len(self.ids)

    @property
    def num_boxes(self) -> int:
        """Number of boxes over all frames."""
        return sum(len(i) for i in self.ids)

    def padded(self, num_frames: int) -> Tracks:
        """The same tracks with empty frames appended up to ``num_frames`` frames."""
        extra = num_frames - self.num_frames
        if extra <= 0:
            return self
        empty = np.zeros(0)
        return Tracks(
            ids=self.ids + (empty,) * extra,
            boxes=self.boxes + (empty,) * extra,
            scores=self.scores + (empty,) * extra,
        )


@dataclass(frozen=True)
class TrackingSequence:
    """What the tracking metrics score: per-frame ids and ground truth x prediction similarity.

    Build it from boxes with :meth:`from_boxes` or :meth:`from_tracks` (similarity = box
    IoU), or give the similarity matrices directly (any score in ``[0, 1]``, e.g. mask IoU).

    Attributes:
        gt_ids: Per frame, int64 ``[G_t]`` ground-truth ids, unique within the frame.
        pred_ids: Per frame, int64 ``[T_t]`` predicted track ids, unique within the frame.
        similarity: Per frame, float64 ``[G_t, T_t]`` similarities in ``[0, 1]``.

    Example:
        >>> seq = TrackingSequence.from_boxes(
        ...     gt_ids=[[1]], gt_boxes=[[[0, 0, 2, 1]]], pred_ids=[[7]], pred_boxes=[[[1, 0, 3, 1]]]
        ... )
        >>> seq.similarity[0]
        array([[0.33333333]])
    """

    gt_ids: Sequence[Any]
    pred_ids: Sequence[Any]
    similarity: Sequence[Any]

    def __post_init__(self) -> None:
        gt_ids = tuple(np.asarray(i, dtype=np.int64).reshape(-1) for i in self.gt_ids)
        pred_ids = tuple(np.asarray(i, dtype=np.int64).reshape(-1) for i in self.pred_ids)
        if not len(gt_ids) == len(pred_ids) == len(self.similarity):
            raise DataError(
                f"gt_ids, pred_ids and similarity must cover the same number of frames, got "
                f"{len(gt_ids)}, {len(pred_ids)} and {len(self.similarity)}"
            )
        for t, (gt, pred) in enumerate(zip(gt_ids, pred_ids, strict=True)):
            _check_frame(t, gt, [], name="gt_ids")
            _check_frame(t, pred, [], name="pred_ids")
        similarity = tuple(
            _similarity_frame(t, np.asarray(sim, dtype=np.float64), (len(gt), len(pred)))
            for t, (gt, pred, sim) in enumerate(zip(gt_ids, pred_ids, self.similarity, strict=True))
        )
        object.__setattr__(self, "gt_ids", gt_ids)
        object.__setattr__(self, "pred_ids", pred_ids)
        object.__setattr__(self, "similarity", similarity)

    @classmethod
    def from_tracks(cls, gt: Tracks, pred: Tracks) -> TrackingSequence:
        """Pair ground truth and predictions frame by frame, scoring pairs by box IoU.

        The shorter track set is padded with empty frames, so a tracker file that stops
        early (or a ground truth that ends before the video) still lines up frame by frame.
        """
        num_frames = max(gt.num_frames, pred.num_frames)
        gt, pred = gt.padded(num_frames), pred.padded(num_frames)
        similarity = [box_iou(g, p) for g, p in zip(gt.boxes, pred.boxes, strict=True)]
        return cls(gt_ids=gt.ids, pred_ids=pred.ids, similarity=similarity)

    @classmethod
    def from_boxes(
        cls,
        gt_ids: Sequence[Any],
        gt_boxes: Sequence[Any],
        pred_ids: Sequence[Any],
        pred_boxes: Sequence[Any],
    ) -> TrackingSequence:
        """Build a sequence from per-frame ids ``[G_t]``/``[T_t]`` and ``xyxy`` boxes ``[., 4]``."""
        return cls.from_tracks(Tracks(gt_ids, gt_boxes), Tracks(pred_ids, pred_boxes))

    @property
    def num_frames(self) -> int:
        """Number of frames, empty ones included."""
        return len(self.gt_ids)


class DenseSequence(NamedTuple):
    """A sequence whose ids are relabelled to ``0..num_ids-1`` (sorted order of the originals)."""

    gt_ids: list[np.ndarray]
    pred_ids: list[np.ndarray]
    similarity: tuple[np.ndarray, ...]
    num_gt_ids: int
    num_pred_ids: int

    @property
    def num_gt_dets(self) -> int:
        """Number of ground-truth boxes over all frames."""
        return sum(len(i) for i in self.gt_ids)

    @property
    def num_pred_dets(self) -> int:
        """Number of predicted boxes over all frames."""
        return sum(len(i) for i in self.pred_ids)


def to_dense(seq: TrackingSequence) -> DenseSequence:
    """Relabel the ids of ``seq`` to contiguous 0-based integers (gt and predictions apart).

    Ids keep their sorted order, so ties in the assignment problems break the same way as
    in TrackEval, which relabels the same way.
    """
    gt_ids, num_gt = _relabel(seq.gt_ids)
    pred_ids, num_pred = _relabel(seq.pred_ids)
    return DenseSequence(gt_ids, pred_ids, seq.similarity, num_gt, num_pred)


def _relabel(frames: tuple[np.ndarray, ...]) -> tuple[list[np.ndarray], int]:
    """Per-frame ids mapped to their rank among all ids of the sequence, and the id count."""
    if not frames:
        return [], 0
    unique, inverse = np.unique(np.concatenate(frames), return_inverse=True)
    splits = np.cumsum([len(f) for f in frames])[:-1]
    return np.split(inverse.astype(np.int64), splits), len(unique)


def _similarity_frame(t: int, sim: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Frame ``t``'s (0-based) similarity matrix, checked to be ``shape`` and in ``[0, 1]``."""
    if sim.size == 0 and shape[0] * shape[1] == 0:
        return sim.reshape(shape)
    record = f"frame {t + 1}"
    if sim.shape != shape:
        raise DataError(
            f"expected shape {list(shape)} (gt x pred), got {list(sim.shape)}",
            record=record,
            field="similarity",
        )
    if not np.all((sim >= 0) & (sim <= 1)):  # also refuses NaN
        raise DataError("values must lie in [0, 1]", record=record, field="similarity")
    return sim


def _check_frame(
    t: int, ids: np.ndarray, arrays: list[tuple[str, np.ndarray]], name: str = "ids"
) -> None:
    """Raise :class:`DataError` for frame ``t`` (0-based) if its arrays disagree or are bad.

    Each array in ``arrays`` must have ``len(ids)`` rows and finite values; ids must be unique.
    """
    record = f"frame {t + 1}"
    for field, values in arrays:
        if values.shape[:1] != ids.shape:
            raise DataError(
                f"{len(ids)} {name} but {field} has shape {list(values.shape)}",
                record=record,
                field=field,
            )
        if not np.all(np.isfinite(values)):
            raise DataError("values must be finite (no NaN or inf)", record=record, field=field)
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise DataError(
            f"id {unique[counts > 1][0]} appears more than once", record=record, field=name
        )
