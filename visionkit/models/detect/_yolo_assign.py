"""Task-aligned label assignment: which anchor points learn which object, and how strongly.

An anchor point is a candidate for an object when its centre lies inside the object's box
(an object so small that no centre falls inside gets the nearest one). Among the
candidates, each object takes the ``topk`` with the best alignment
``score^alpha * IoU^beta``, where ``score`` is the predicted probability of the object's
class and ``IoU`` that of the predicted box with the object: the points that already
classify *and* localise it best (Feng et al., "TOOD: Task-aligned One-stage Object
Detection", ICCV 2021). A point chosen by several objects keeps the one its box overlaps
most. The classification target of a positive point is its alignment, rescaled so each
object's best point gets that object's best IoU: scores learn to rank boxes by quality,
which is what NMS and AP reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from visionkit.ops.boxes import box_iou

__all__ = ["Assignment", "TaskAlignedAssigner"]


@dataclass(frozen=True)
class Assignment:
    """The assignment of one image's anchor points.

    Attributes:
        positive: ``bool`` ``[N]``, the points that learn an object.
        gt_index: ``int64`` ``[N]``, the object each positive point learns (0 elsewhere).
        boxes: ``[N, 4]`` that object's box, ``xyxy`` pixels (0 elsewhere).
        target_scores: ``float`` ``[N, K]``, the classification target: the normalised
            alignment at the object's class for positives, 0 everywhere else.
    """

    positive: torch.Tensor
    gt_index: torch.Tensor
    boxes: torch.Tensor
    target_scores: torch.Tensor


class TaskAlignedAssigner:
    """Assign objects to anchor points by task alignment (see the module docs).

    Args:
        topk: Points each object takes at most.
        alpha: Exponent of the class score in the alignment.
        beta: Exponent of the IoU in the alignment.

    Example:
        >>> assigner = TaskAlignedAssigner(topk=10)
        >>> a = assigner(scores, boxes, points, gt_boxes, gt_labels)  # doctest: +SKIP
        >>> a.positive.sum()  # doctest: +SKIP
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        self.topk = topk
        self.alpha = alpha
        self.beta = beta

    @torch.no_grad()
    def __call__(
        self,
        scores: torch.Tensor,
        boxes: torch.Tensor,
        points: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
    ) -> Assignment:
        """Assign the objects of one image.

        Args:
            scores: ``[N, K]`` predicted class probabilities (after the sigmoid).
            boxes: ``[N, 4]`` predicted boxes, ``xyxy`` pixels.
            points: ``[N, 2]`` anchor point centres ``(x, y)``, pixels.
            gt_boxes: ``[M, 4]`` object boxes, ``xyxy`` pixels (``M`` may be 0).
            gt_labels: ``int64`` ``[M]`` object classes in ``0..K-1``.

        Returns:
            The :class:`Assignment`; with no objects, no point is positive.
        """
        num_points = len(points)
        if len(gt_boxes) == 0:
            return Assignment(
                torch.zeros(num_points, dtype=torch.bool, device=points.device),
                torch.zeros(num_points, dtype=torch.int64, device=points.device),
                torch.zeros_like(boxes),
                torch.zeros_like(scores),
            )
        candidates = self._candidates(points, gt_boxes)
        iou = box_iou(gt_boxes, boxes.to(gt_boxes.dtype))
        metric = scores[:, gt_labels].T.pow(self.alpha) * iou.pow(self.beta) * candidates
        # Rank candidates above every other point even while all alignments are 0.
        ranking = torch.where(candidates, metric, -1.0)
        top = ranking.topk(min(self.topk, num_points), dim=1).indices
        chosen = torch.zeros_like(candidates).scatter_(1, top, True) & candidates
        owner = torch.where(chosen, iou, -1.0).argmax(dim=0)
        positive = chosen.any(dim=0)
        owned = torch.nn.functional.one_hot(owner, len(gt_boxes)).T.bool() & positive
        metric = metric * owned
        scale = (iou * owned).amax(dim=1, keepdim=True) / metric.amax(dim=1, keepdim=True).clamp(
            min=1e-9
        )
        quality = (metric * scale).amax(dim=0)
        target_scores = torch.zeros_like(scores)
        target_scores[positive, gt_labels[owner[positive]]] = quality[positive].to(scores.dtype)
        owner = owner * positive
        return Assignment(positive, owner, gt_boxes[owner] * positive[:, None], target_scores)

    @staticmethod
    def _candidates(points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """``bool`` ``[M, N]``: points inside each box, or the nearest one when none is."""
        lower = points[None] - gt_boxes[:, None, :2]
        upper = gt_boxes[:, None, 2:] - points[None]
        inside = torch.cat([lower, upper], dim=-1).amin(dim=-1) > 0
        centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        nearest = torch.cdist(centres, points).argmin(dim=1)
        fallback = torch.zeros_like(inside).scatter_(1, nearest[:, None], True)
        return inside | (fallback & ~inside.any(dim=1, keepdim=True))
