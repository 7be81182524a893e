"""Segment everything: SAM prompted with a grid of points, its masks filtered and deduplicated.

:class:`SamAutomaticMaskGenerator` is segment-anything's ``SamAutomaticMaskGenerator`` on the
whole image (no crops): every point of a regular grid is one prompt with three masks; a
mask is kept when its predicted IoU and its stability score pass their thresholds, then
box NMS over the boxes of all kept masks removes duplicates (several points on one object
give the same mask), and with ``min_mask_region_area`` small islands and holes are cleaned
away as segment-anything's ``postprocess_small_regions`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.errors import ConfigError
from visionkit.models.foundation._sam_predictor import MASK_THRESHOLD, SamPredictor, mask_boxes
from visionkit.ops.boxes import nms

__all__ = ["SamAutomaticMaskGenerator", "stability_score"]

MaskRecord = dict[str, Any]
"""One mask of :meth:`SamAutomaticMaskGenerator.generate` (see there for the keys)."""


def stability_score(
    logits: torch.Tensor, threshold: float = MASK_THRESHOLD, offset: float = 1.0
) -> torch.Tensor:
    """How little a mask changes when its logit threshold moves by ``offset`` either way.

    The IoU of the mask cut at ``threshold + offset`` with the mask cut at
    ``threshold - offset`` (segment-anything's ``calculate_stability_score``); the first
    lies inside the second, so the IoU is the ratio of their pixel counts.

    Args:
        logits: ``[..., H, W]`` mask logits.
        threshold: The logit that separates inside from outside.
        offset: How far the threshold moves.

    Returns:
        ``float32`` ``[...]`` in ``[0, 1]``; 0 where even the loose mask is empty.

    Example:
        >>> stability_score(torch.tensor([[[-2.0, -0.5, 0.5, 1.5, 3.0]]]))
        tensor([0.5000])
    """
    tight = (logits > threshold + offset).flatten(-2).sum(-1, dtype=torch.int64)
    loose = (logits > threshold - offset).flatten(-2).sum(-1, dtype=torch.int64)
    return (tight / loose.clamp(min=1)).float()


class SamAutomaticMaskGenerator:
    """Masks of everything in an image, from a grid of point prompts.

    Args:
        predictor: The :class:`SamPredictor` to prompt.
        points_per_side: The grid has this many points along each side, at the centres of
            equal cells, so ``points_per_side ** 2`` prompts.
        points_per_batch: Prompts decoded at once (memory: three full-size logit masks
            each).
        pred_iou_thresh: Keep masks whose predicted IoU is above this (0 keeps all).
        stability_score_thresh: Keep masks whose :func:`stability_score` is above this
            (0 keeps all).
        stability_score_offset: The logit offset of the stability score.
        box_nms_thresh: Box IoU above which the mask with the lower predicted IoU goes.
        min_mask_region_area: With a positive value, fill holes and remove islands smaller
            than this many pixels from each mask, then drop the duplicates that this makes.

    Raises:
        ConfigError: A count below 1, a threshold outside ``[0, 1]`` or a negative area.

    Example:
        >>> generator = SamAutomaticMaskGenerator(load_sam("sam"))  # doctest: +SKIP
        >>> records = generator.generate("street.jpg")  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: SamPredictor,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        min_mask_region_area: int = 0,
    ) -> None:
        for field, count in (("points_per_side", points_per_side),
                             ("points_per_batch", points_per_batch)):  # fmt: skip
            if int(count) != count or count < 1:
                raise ConfigError(f"must be a whole number >= 1, got {count}", field=field)
        for field, value in (("pred_iou_thresh", pred_iou_thresh),
                             ("stability_score_thresh", stability_score_thresh),
                             ("box_nms_thresh", box_nms_thresh)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"must be in [0, 1], got {value}", field=field)
        if min_mask_region_area < 0:
            raise ConfigError(
                f"must be >= 0, got {min_mask_region_area}", field="min_mask_region_area"
            )
        self.predictor = predictor
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.min_mask_region_area = min_mask_region_area

    def generate(self, image: np.ndarray | Any | str | Path) -> list[MaskRecord]:
        """Every mask that SAM finds in ``image``, largest first.

        Args:
            image: What :meth:`SamPredictor.set_image` takes; it becomes the predictor's
                image.

        Returns:
            One dict per mask, by decreasing area: ``"segmentation"`` ``bool`` ``[H, W]``,
            ``"area"`` (pixels), ``"bbox"`` ``[x0, y0, x1, y1]`` pixel-edge ``xyxy``,
            ``"predicted_iou"``, ``"stability_score"`` and ``"point_coords"``
            ``[[x, y]]``, the grid point that prompted it, in original pixels.
        """
        self.predictor.set_image(image)
        height, width = self.predictor.original_size
        grid = _point_grid(self.points_per_side) * torch.tensor([width, height])
        found = [self._decode(batch) for batch in grid.split(self.points_per_batch)]
        masks, scores, stability, points = (torch.cat(part) for part in zip(*found, strict=True))
        keep = torch.nonzero(masks.flatten(1).any(1)).squeeze(1)  # an empty mask has no box
        keep = keep[nms(mask_boxes(masks[keep], inclusive=True), scores[keep], self.box_nms_thresh)]
        arrays = list(masks[keep].cpu().numpy())
        scores, stability, points = (t[keep].cpu() for t in (scores, stability, points))
        if self.min_mask_region_area > 0:
            arrays, kept = _clean_small_regions(
                arrays, self.min_mask_region_area, self.box_nms_thresh
            )
            scores, stability, points = scores[kept], stability[kept], points[kept]
        return _records(arrays, scores, stability, points)

    def _decode(
        self, points: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks, predicted IoUs, stability scores and prompting points of one batch of
        grid points that pass the thresholds."""
        labels = torch.ones(len(points), 1, dtype=torch.int64)
        logits, scores, _ = self.predictor.predict_torch(points[:, None], labels, multimask=True)
        logits, scores = logits.flatten(0, 1), scores.flatten()
        points = points.to(logits.device).repeat_interleave(len(logits) // len(points), dim=0)
        stability = stability_score(logits, MASK_THRESHOLD, self.stability_score_offset)
        keep = torch.ones_like(scores, dtype=torch.bool)
        if self.pred_iou_thresh > 0:
            keep &= scores > self.pred_iou_thresh
        if self.stability_score_thresh > 0:
            keep &= stability > self.stability_score_thresh
        return logits[keep] > MASK_THRESHOLD, scores[keep], stability[keep], points[keep]


def _point_grid(points_per_side: int) -> torch.Tensor:
    """``[n * n, 2]`` ``(x, y)`` cell centres of an ``n x n`` grid on the unit square, row by
    row (segment-anything's ``build_point_grid``)."""
    offset = 1 / (2 * points_per_side)
    side = torch.linspace(offset, 1 - offset, points_per_side, dtype=torch.float64)
    y, x = torch.meshgrid(side, side, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def _remove_small_regions(mask: np.ndarray, min_area: float, holes: bool) -> np.ndarray:
    """``mask`` with holes (or islands) of fewer than ``min_area`` pixels filled (removed).

    Connected regions use 8-connectivity. When every island is small, the largest stays,
    so a mask never empties (segment-anything's ``remove_small_regions``).
    """
    import cv2  # classical-CV dependency, only needed for this clean-up

    regions = (mask != holes).astype(np.uint8)  # holes: the background's regions
    count, labels, stats, _ = cv2.connectedComponentsWithStats(regions, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask
    if holes:
        return mask | np.isin(labels, small)
    big = np.setdiff1d(np.arange(1, count), small)
    return np.isin(labels, big if len(big) else [int(np.argmax(sizes)) + 1])


def _clean_small_regions(
    masks: list[np.ndarray], min_area: float, nms_thresh: float
) -> tuple[list[np.ndarray], torch.Tensor]:
    """Masks without small holes and islands, deduplicated again; and which were kept.

    Cleaning can make two masks alike; box NMS then prefers the masks that needed no
    cleaning (segment-anything's ``postprocess_small_regions``).
    """
    cleaned, unchanged = [], []
    for mask in masks:
        new = _remove_small_regions(_remove_small_regions(mask, min_area, True), min_area, False)
        cleaned.append(new)
        unchanged.append(float(np.array_equal(new, mask)))
    if not cleaned:
        return [], torch.zeros(0, dtype=torch.int64)
    boxes = mask_boxes(torch.from_numpy(np.stack(cleaned)), inclusive=True)
    kept = nms(boxes, torch.tensor(unchanged), nms_thresh)
    return [cleaned[i] for i in kept.tolist()], kept


def _records(
    masks: list[np.ndarray], scores: torch.Tensor, stability: torch.Tensor, points: torch.Tensor
) -> list[MaskRecord]:
    """The output dicts, by decreasing area."""
    if not masks:
        return []
    boxes = mask_boxes(torch.from_numpy(np.stack(masks))).tolist()
    records = [
        {
            "segmentation": mask,
            "area": int(mask.sum()),
            "bbox": box,
            "predicted_iou": float(score),
            "stability_score": float(stable),
            "point_coords": [[float(v) for v in point]],
        }
        for mask, box, score, stable, point in zip(
            masks, boxes, scores.tolist(), stability.tolist(), points.tolist(), strict=True
        )
    ]
    return sorted(records, key=lambda record: record["area"], reverse=True)
