"""COCO matching of detections to ground truth, vectorised over every (image, category) group.

pycocotools' ``COCOeval.evaluate`` visits each (image, category, area range) in Python and
matches detections greedily, one IoU threshold at a time. Here the same rules run on flat
arrays: detections are sorted by (group, -score, file order) and cut to ``max_det`` per
group, every candidate (detection, ground truth) pair of a group is listed once, and the
greedy loop runs over the detection *rank* inside its group (at most ``max_det`` steps),
each step matching every group, all area ranges and all IoU thresholds at once. The result
is bit-for-bit the one of pycocotools (see :func:`match` for the rules).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
"""COCO's ``areaRng``: all, small, medium, large, in square pixels, inclusive both ends."""

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
"""COCO's ``iouThrs`` ``[T=10]``, built exactly as pycocotools builds it (not ``arange``)."""

_PAIR_CHUNK = 1 << 19  # (detection, object) pairs whose IoU is computed at once
_BEST_TIER = np.int64(1) << 62  # above the bits of every IoU <= 1: "not ignored" wins first


@dataclass(frozen=True)
class Instances:
    """Ground-truth objects or detections of a whole evaluation, as flat arrays.

    Args:
        image: ``[N]`` int64 image id of each instance.
        category: ``[N]`` int64 category id.
        boxes: ``[N, 4]`` float64 ``xywh`` absolute pixels (COCO's convention, so the IoU
            arithmetic is pycocotools' own).
        area: ``[N]`` float64 area that decides the area range (COCO's ``area`` field for
            ground truth; ``w * h`` or the mask area for detections).
        crowd: ``[N]`` bool crowd flag (ground truth), or None for detections.
        score: ``[N]`` float64 confidence (detections), or None for ground truth.
        masks: One COCO RLE dict per instance for ``segm`` evaluation, else None.
    """

    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    area: np.ndarray
    crowd: np.ndarray | None = None
    score: np.ndarray | None = None
    masks: Sequence[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Matches:
    """What :func:`match` found for the kept detections (at most ``max_det`` per group).

    The kept detections come in the order of pycocotools' accumulation: by category, then
    score (highest first), image, and rank in the image.

    Attributes:
        kept: ``[D]`` indices into the detections.
        rank: ``[D]`` position of each kept detection in its (image, category) group: 0 for
            the highest score (ties in file order).
        category: ``[D]`` position of each kept detection's category in the category ids.
        matched: ``[A, T, D]`` bool: matched at area range ``a`` and IoU threshold ``t``.
        ignored: ``[A, T, D]`` bool: matched to an ignored object, or unmatched and
            outside the area range; ignored detections count neither way.
        gt_category: ``[G]`` position of each object's category in the category ids.
        gt_counted: ``[A, G]`` bool: objects not ignored in each area range.
    """

    kept: np.ndarray
    rank: np.ndarray
    category: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    gt_category: np.ndarray
    gt_counted: np.ndarray


def outside(area: np.ndarray) -> np.ndarray:
    """``[A, N]`` bool: which areas fall outside each of :data:`AREA_RANGES`."""
    low, high = np.asarray(AREA_RANGES).T[:, :, None]
    return (area < low) | (area > high)


def match(
    gt: Instances,
    dets: Instances,
    image_ids: np.ndarray,
    category_ids: np.ndarray,
    max_det: int,
) -> Matches:
    """Match detections to ground truth greedily, exactly as pycocotools' ``evaluateImg``.

    In each (image, category) group, detections go highest score first (ties in file order),
    the first ``max_det`` only. Each takes, among the objects not yet taken at this IoU
    threshold (crowd regions can be taken again) with ``IoU >= min(t, 1 - 1e-10)``, the
    best non-ignored one, else the best ignored one; equal IoUs go to the later object in
    file order. An object is ignored when it is a crowd region or its ``area`` is outside the
    area range; a detection takes the ignore flag of its match.

    Args:
        gt: Ground truth, with ``crowd``; its images and categories are in the id lists.
        dets: Detections, with ``score``; likewise.
        image_ids: ``[I]`` sorted image ids.
        category_ids: ``[K]`` sorted category ids.
        max_det: Most detections evaluated per group (COCO's largest ``maxDets``).

    Returns:
        The :class:`Matches`.
    """
    k = len(category_ids)
    gt_category = np.searchsorted(category_ids, gt.category)
    gt_group = np.searchsorted(image_ids, gt.image) * k + gt_category
    det_group = np.searchsorted(image_ids, dets.image) * k + np.searchsorted(
        category_ids, dets.category
    )
    kept, rank = _rank(det_group, dets.score, max_det)
    gt_order = np.argsort(gt_group, kind="stable")
    pair_det, pair_gt, iou = _candidate_pairs(gt, dets, kept, det_group[kept], gt_group, gt_order)
    # From (group, rank) order to accumulation order: category, -score, image, rank.
    image, category = np.divmod(det_group[kept], k)
    order = np.lexsort((rank, image, -dets.score[kept], category))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    kept, rank, pair_det = kept[order], rank[order], position[pair_det]
    gt_counted = ~(outside(gt.area) | gt.crowd)
    matched, ignored = _greedy(pair_det, pair_gt, iou, rank, gt_counted, gt.crowd, len(kept))
    matched_nothing = ~matched & outside(dets.area[kept])[:, None, :]
    return Matches(
        kept, rank, category[order], matched, ignored | matched_nothing, gt_category, gt_counted
    )


def _rank(group: np.ndarray, score: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort detections by (group, -score, file order); keep the first ``limit`` per group."""
    order = np.lexsort((-score, group))  # lexsort is stable: equal scores keep file order
    sorted_group = group[order]
    first = np.flatnonzero(np.diff(sorted_group, prepend=-1))
    sizes = np.diff(np.r_[first, len(order)])
    rank = np.arange(len(order)) - np.repeat(first, sizes)
    keep = rank < limit
    return order[keep], rank[keep]


def _candidate_pairs(
    gt: Instances,
    dets: Instances,
    kept: np.ndarray,
    kept_group: np.ndarray,
    gt_group: np.ndarray,
    gt_order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (kept detection, object) pair of a group that could match at the lowest threshold.

    Pairs are listed detection by detection (objects in file order within one), their IoU
    computed, and those below the lowest threshold, which can never match, dropped. Crowded
    scenes (100 detections against 50 objects in thousands of images) have many millions of
    pairs, so they are made in chunks of about :data:`_PAIR_CHUNK`, which bounds the memory.

    Returns:
        ``(pair_det, pair_gt, iou)``: positions into ``kept``, indices into ``gt``, IoU.
    """
    sorted_group = gt_group[gt_order]
    low = np.searchsorted(sorted_group, kept_group, side="left")
    count = np.searchsorted(sorted_group, kept_group, side="right") - low
    layout = _PairLayout(gt, dets, kept, kept_group, low, count, gt_order)
    total = np.cumsum(count)
    cuts = np.searchsorted(
        total, np.arange(_PAIR_CHUNK, total[-1] if len(total) else 0, _PAIR_CHUNK)
    )
    bounds = np.unique(np.r_[0, cuts, len(kept)])
    chunks = [_chunk_pairs(layout, slice(*part)) for part in itertools.pairwise(bounds)]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return tuple(np.concatenate(parts) for parts in zip(empty, *chunks, strict=True))


@dataclass(frozen=True)
class _PairLayout:
    """Where the candidate objects of each kept detection lie: see :func:`_candidate_pairs`.

    Attributes:
        gt: The ground truth.
        dets: The detections.
        kept: ``[D]`` indices into ``dets`` of the kept detections, by (group, rank).
        kept_group: ``[D]`` (image, category) group of each kept detection.
        low: ``[D]`` first position in ``gt_order`` of the objects of its group.
        count: ``[D]`` number of objects in its group.
        gt_order: ``[G]`` object indices sorted by group, file order within one.
    """

    gt: Instances
    dets: Instances
    kept: np.ndarray
    kept_group: np.ndarray
    low: np.ndarray
    count: np.ndarray
    gt_order: np.ndarray


def _chunk_pairs(layout: _PairLayout, part: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The surviving pairs of the kept detections at ``part``: see :func:`_candidate_pairs`."""
    gt, dets, count = layout.gt, layout.dets, layout.count[part]
    pair_det = np.repeat(np.arange(part.start, part.stop), count)
    offset = np.arange(len(pair_det)) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = layout.gt_order[layout.low[pair_det] + offset]
    if dets.masks is None:
        iou = _box_iou(dets.boxes[layout.kept[pair_det]], gt.boxes[pair_gt], gt.crowd[pair_gt])
    else:
        iou = _mask_iou(layout, part)
    keep = iou >= min(IOU_THRESHOLDS[0], 1 - 1e-10)
    return pair_det[keep], pair_gt[keep], iou[keep]


def _box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of paired ``xywh`` boxes, with the operations of pycocotools' C ``bbIou`` in the
    same order, so every value is bitwise equal; a crowd region's union is the detection."""
    dx, dy, dw, dh = dt.T
    gx, gy, gw, gh = gt.T
    det_area = dw * dh
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    union = np.where(crowd, det_area, det_area + gw * gh - inter)
    overlap = (w > 0) & (h > 0)
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap)


def _mask_iou(layout: _PairLayout, part: slice) -> np.ndarray:
    """Mask IoU of the pairs of the kept detections at ``part``, in the order of
    :func:`_candidate_pairs` (each group's kept detections in rank order, times its objects
    in file order): one pycocotools ``iou`` call per group, which treats crowd regions as
    pycocotools does."""
    gt, dets, gt_order = layout.gt, layout.dets, layout.gt_order
    kept, kept_group = layout.kept[part], layout.kept_group[part]
    low, count = layout.low[part], layout.count[part]
    starts = np.flatnonzero(np.diff(kept_group, prepend=-1))
    ends = np.append(starts[1:], len(kept))[: len(starts)]
    blocks = [np.zeros(0)]
    for start, end in zip(starts, ends, strict=True):
        if count[start] == 0:
            continue
        objects = gt_order[low[start] : low[start] + count[start]]
        ious = mask_utils.iou(
            [dets.masks[i] for i in kept[start:end]],
            [gt.masks[i] for i in objects],
            gt.crowd[objects].astype(np.uint8).tolist(),
        )
        blocks.append(np.asarray(ious, dtype=np.float64).ravel())
    return np.concatenate(blocks)


def _greedy(
    pair_det: np.ndarray,
    pair_gt: np.ndarray,
    iou: np.ndarray,
    rank: np.ndarray,
    gt_counted: np.ndarray,
    crowd: np.ndarray,
    num_kept: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the greedy matching, one detection rank per step, every group at once.

    The choice of each detection is the largest of an integer key per pair: the IoU's bits
    (non-negative floats sort like their bit patterns) plus a tier bit for objects that are
    not ignored, which reproduces pycocotools' scan (the ignored objects come last and are
    reached only when no counted object matched); ties go to the later pair, i.e. the
    later object in file order. Keys compare exactly, so no IoU is ever rounded.

    Returns:
        ``(matched, ignored)``, each ``[A, T, num_kept]`` bool.
    """
    areas, thresholds = gt_counted.shape[0], len(IOU_THRESHOLDS)
    matched = np.zeros((areas, thresholds, num_kept), dtype=bool)
    ignored = np.zeros_like(matched)
    taken = np.zeros((areas, thresholds, gt_counted.shape[1]), dtype=bool)
    by_rank = np.argsort(rank[pair_det], kind="stable")
    pair_det, pair_gt, iou = pair_det[by_rank], pair_gt[by_rank], iou[by_rank]
    key = iou.view(np.int64) | np.where(gt_counted[:, pair_gt], _BEST_TIER, 0)  # [A, P]
    passed = np.searchsorted(np.minimum(IOU_THRESHOLDS, 1 - 1e-10), iou, side="right")
    steps = np.searchsorted(rank[pair_det], np.arange(rank.max(initial=-1) + 2))
    level = np.arange(thresholds)[None, :, None]
    for low, high in itertools.pairwise(steps):
        if low == high:
            continue
        dets, objects = pair_det[low:high], pair_gt[low:high]
        candidate = ~taken[:, :, objects] & (level < passed[low:high])
        scores = np.where(candidate, key[:, None, low:high], -1)
        starts = np.flatnonzero(np.diff(dets, prepend=-1))
        best = np.maximum.reduceat(scores, starts, axis=2)
        sizes = np.diff(np.r_[starts, len(dets)])
        winner = candidate & (scores == np.repeat(best, sizes, axis=2))
        where = np.maximum.reduceat(np.where(winner, np.arange(len(dets)), -1), starts, axis=2)
        a, t, s = np.nonzero(where >= 0)
        chosen, det = objects[where[a, t, s]], dets[starts[s]]
        matched[a, t, det] = True
        ignored[a, t, det] = ~gt_counted[a, chosen]
        solid = ~crowd[chosen]  # crowd regions stay available to later detections
        taken[a[solid], t[solid], chosen[solid]] = True
    return matched, ignored
