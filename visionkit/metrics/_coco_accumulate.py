"""COCO's accumulation (precision at 101 recall points) and its 12-number summary.

The rules are pycocotools' ``COCOeval.accumulate`` and ``summarize``; the arithmetic is
too (the same float operations on the same values), so results are bitwise equal. What
changes is the shape of the work: instead of a Python loop over categories, area ranges,
detection limits and IoU thresholds, each (area range, detection limit) is one pass of
cumulative sums over every category at once, and the precision envelope is read at the 101
recall points with one ``searchsorted`` and one ``maximum.reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from visionkit.metrics._coco_match import IOU_THRESHOLDS, Matches

RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
"""COCO's ``recThrs`` ``[R=101]``, built exactly as pycocotools builds it."""

AREA_LABELS = ("all", "small", "medium", "large")
"""Names of the area ranges, in the order of the ``A`` axis."""


@dataclass(frozen=True)
class PrecisionRecallCurves:
    """COCO's accumulated evaluation (pycocotools' ``COCOeval.eval``): for summaries and plots.

    Attributes:
        precision: ``[T, R, K, A, M]`` interpolated precision at each IoU threshold, recall
            threshold, category, area range and detection limit; -1 where the category has
            no counted ground truth in that area range.
        recall: ``[T, K, A, M]`` final recall; -1 likewise.
        scores: ``[T, R, K, A, M]`` detection score at which each recall threshold is first
            reached (0 if it never is); -1 likewise.
        iou_thresholds: ``[T]`` IoU thresholds (0.50, 0.55, ..., 0.95).
        recall_thresholds: ``[R]`` recall thresholds (0.00, 0.01, ..., 1.00).
        classes: ``[K]`` category ids, sorted.
        area_ranges: Names of the ``A`` area ranges: all, small, medium, large.
        max_detections: The ``M`` per-image detection limits, ascending.

    Example:
        Precision-recall curve of category ``classes[k]`` at IoU 0.5, all areas, 100 dets:
        ``curves.recall_thresholds`` against ``curves.precision[0, :, k, 0, -1]``.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    classes: np.ndarray
    area_ranges: tuple[str, ...]
    max_detections: tuple[int, ...]


def accumulate(
    matches: Matches, score: np.ndarray, classes: np.ndarray, max_dets: tuple[int, ...]
) -> PrecisionRecallCurves:
    """Turn matches into precision/recall arrays, as pycocotools' ``accumulate``.

    Args:
        matches: Result of :func:`~visionkit.metrics._coco_match.match` (kept detections in
            accumulation order).
        score: ``[D]`` scores of the kept detections.
        classes: ``[K]`` sorted category ids.
        max_dets: Ascending per-image detection limits.

    Returns:
        The :class:`PrecisionRecallCurves`.
    """
    areas, k = matches.gt_counted.shape[0], len(classes)
    gt_category = matches.gt_category
    counted = np.stack([np.bincount(gt_category[c], minlength=k) for c in matches.gt_counted])
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for max_det in max_dets:
        chosen = matches.rank < max_det
        matched, ignored = matches.matched, matches.ignored
        if not chosen.all():
            matched, ignored = matched[:, :, chosen], ignored[:, :, chosen]
        category = matches.category[chosen]
        starts = np.searchsorted(category, np.arange(k))
        ends = np.r_[starts[1:], len(category)]
        found += [
            _curves(matched[a], ignored[a], score[chosen], starts, ends, c)
            for a, c in enumerate(counted)
        ]
    defined = (counted > 0).T[:, :, None]  # [K, A, 1]
    precision, recall, scores = (
        _coco_layout([part[i] for part in found], defined, len(max_dets)) for i in range(3)
    )
    return PrecisionRecallCurves(
        precision=precision,
        recall=recall,
        scores=scores,
        iou_thresholds=IOU_THRESHOLDS.copy(),
        recall_thresholds=RECALL_THRESHOLDS.copy(),
        classes=np.asarray(classes),
        area_ranges=AREA_LABELS[:areas],
        max_detections=tuple(max_dets),
    )


def _coco_layout(parts: list[np.ndarray], defined: np.ndarray, limits: int) -> np.ndarray:
    """``M * A`` arrays ``[..., K]`` (limit-major) as pycocotools' ``[..., K, A, M]``, with
    -1 where the category has no counted ground truth (``defined`` is ``[K, A, 1]``)."""
    stacked = np.stack(parts, axis=-1)
    stacked = stacked.reshape(*parts[0].shape, limits, len(parts) // limits).swapaxes(-1, -2)
    return np.where(defined, stacked, -1.0)


def _curves(
    matched: np.ndarray,
    ignored: np.ndarray,
    score: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    counted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision ``[T, R, K]``, recall ``[T, K]`` and scores ``[T, R, K]`` of one area range
    and detection limit.

    ``matched`` and ``ignored`` are ``[T, n]`` over the detections sorted as pycocotools
    sorts them, category-major (category ``k`` is ``[starts[k], ends[k])``). Only the true
    positives ("hits") are visited: pycocotools' interpolated precision at a recall point is
    the largest precision from the first detection that reaches it on, and precision peaks
    only at hits, so it is the largest precision over the hits from the ``L``-th on, where
    ``L`` is the hit count that reaches the recall point. Values of categories without
    counted ground truth are meaningless and dropped by the caller.
    """
    thresholds, k = matched.shape[0], len(starts)
    lengths = ends - starts
    hits = _hits(matched, ~ignored, starts, lengths)
    count = hits.count.reshape(thresholds, k, 1)
    first = hits.first.reshape(thresholds, k, 1)
    level = _levels(counted)[None]  # [1, K, R]
    start = first + np.minimum(np.maximum(level - 1, 0), count)  # [T, K, R]
    # Interpolated precision: maxima of the hit runs between consecutive levels, then a
    # running maximum from the end; empty runs (level out of reach) give 0 as in pycocotools.
    bounds = np.concatenate([start, first + count], axis=2)
    runs = np.maximum.reduceat(np.r_[hits.precision, 0.0], bounds.ravel()).reshape(bounds.shape)
    runs = np.where(bounds[..., :-1] < bounds[..., 1:], runs[..., :-1], 0.0)
    interpolated = np.maximum.accumulate(runs[..., ::-1], axis=-1)[..., ::-1]
    # Score where each level is first reached: at the level-th hit (level 0: the first
    # detection, counted or not), 0 where it never is.
    found = np.where(level == 0, lengths[None, :, None] > 0, level <= count)
    position = np.where(level == 0, starts[None, :, None], np.r_[hits.cols, 0][start])
    reached = np.r_[score, 0.0][np.where(found, position, len(score))]
    recall = np.where(lengths > 0, count[..., 0] / np.maximum(counted, 1), 0.0)
    return interpolated.transpose(0, 2, 1), recall, reached.transpose(0, 2, 1)


class _Hits(NamedTuple):
    """The true positives of ``[T, n]`` matches, listed threshold-major.

    Attributes:
        cols: ``[H]`` detection position of each hit.
        count: ``[T * K]`` hits per (threshold, category).
        first: ``[T * K]`` index in the list of each (threshold, category)'s first hit.
        precision: ``[H]`` pycocotools' ``tp / (fp + tp + eps)`` at each hit, same floats.
    """

    cols: np.ndarray
    count: np.ndarray
    first: np.ndarray
    precision: np.ndarray


def _hits(
    matched: np.ndarray, counts: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> _Hits:
    """Find the hits (matched and counted) and the precision at each."""
    thresholds, k = matched.shape[0], len(starts)
    seen = np.cumsum(counts, axis=1, dtype=np.int32)  # detections that count: tp + fp
    before = np.concatenate([np.zeros((thresholds, 1), seen.dtype), seen], axis=1)[:, starts]
    rows, cols = np.nonzero(matched & counts)
    category = np.repeat(np.arange(k), lengths)[cols]
    run = rows * k + category  # ascending, as hits are listed threshold-major
    count = np.bincount(run, minlength=thresholds * k)
    first = np.cumsum(count) - count
    tp = np.arange(len(run)) - first[run] + 1
    fp = seen[rows, cols] - before[rows, category] - tp
    tp_float = tp.astype(np.float64)
    return _Hits(cols, count, first, tp_float / (fp.astype(np.float64) + tp_float + np.spacing(1)))


def _levels(counted: np.ndarray) -> np.ndarray:
    """``[K, R]`` smallest true-positive count ``j`` with ``j / counted >= recall threshold``,
    found with the same float division that pycocotools uses (so equal at every boundary)."""
    total = np.maximum(counted, 1)[:, None]
    guess = np.ceil(RECALL_THRESHOLDS * total).astype(np.int64)
    candidates = np.clip(guess[..., None] + np.arange(-2, 3), 0, total[..., None])
    reaches = candidates / total[..., None] >= RECALL_THRESHOLDS[:, None]
    return np.where(reaches, candidates, np.iinfo(np.int64).max).min(axis=-1)


def summarize(curves: PrecisionRecallCurves) -> dict[str, Any]:
    """The 12 COCO statistics, per-class AP and AR, with torchmetrics' key names.

    Means are over entries > -1 (-1 when none), taken on the same slices as pycocotools'
    ``summarize`` so the floating-point sums run in the same order. The "@100" statistics
    use the largest detection limit.
    """
    precision, recall = curves.precision, curves.recall
    last, top = len(curves.max_detections) - 1, curves.max_detections[-1]
    t50, t75 = (np.where(curves.iou_thresholds == v)[0] for v in (0.5, 0.75))
    stats: dict[str, Any] = {
        "map": _mean(precision[:, :, :, 0, last]),
        "map_50": _mean(precision[t50][:, :, :, 0, last]),
        "map_75": _mean(precision[t75][:, :, :, 0, last]),
    }
    for a, label in enumerate(AREA_LABELS[1:], start=1):
        stats[f"map_{label}"] = _mean(precision[:, :, :, a, last])
    for m, max_det in enumerate(curves.max_detections):
        stats[f"mar_{max_det}"] = _mean(recall[:, :, 0, m])
    for a, label in enumerate(AREA_LABELS[1:], start=1):
        stats[f"mar_{label}"] = _mean(recall[:, :, a, last])
    classes = range(len(curves.classes))
    stats["map_per_class"] = [_mean(precision[:, :, k, 0, last]) for k in classes]
    stats[f"mar_{top}_per_class"] = [_mean(recall[:, k, 0, last]) for k in classes]
    stats["classes"] = [int(c) for c in curves.classes]
    return stats


def _mean(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0
