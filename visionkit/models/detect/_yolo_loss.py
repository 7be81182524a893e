"""The training loss of visionkit's single-shot detector.

Three terms, each normalised by the summed classification targets of the batch (so a
batch with more or better-matched objects does not weigh more):

- ``loss_cls``: a quality classification loss on every anchor point and class, with the
  task-aligned targets of :mod:`visionkit.models.detect._yolo_assign` (0 for background);
  binary cross-entropy by default, or the varifocal loss (Zhang et al., CVPR 2021);
- ``loss_box``: the CIoU loss (Zheng et al., 2021) of each positive point's decoded box
  with its object's box, weighted by the point's target;
- ``loss_dfl``: the distribution focal loss (Li et al., NeurIPS 2020) that puts each
  side's distribution on the two bins around the true distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from visionkit.errors import ConfigError
from visionkit.models.detect._yolo_assign import TaskAlignedAssigner
from visionkit.models.detect._yolo_blocks import (
    boxes_to_distances,
    distances_to_boxes,
    expected_distances,
)
from visionkit.ops.losses import ciou_loss, varifocal_loss

__all__ = ["CLS_LOSSES", "LossGains", "YoloLoss"]

CLS_LOSSES = ("bce", "varifocal")
"""Classification losses :class:`YoloLoss` can use."""


@dataclass(frozen=True)
class LossGains:
    """Weights of the three loss terms.

    The defaults balance the terms' typical magnitudes as in YOLOv8's recipe, where the
    box term dominates early and the classification term late.
    """

    cls: float = 0.5
    box: float = 7.5
    dfl: float = 1.5


class YoloLoss:
    """Assign each image's objects to anchor points and compute the three loss terms.

    Args:
        assigner: Chooses the positive points and their classification targets.
        gains: Weights of the terms.
        cls_loss: ``"bce"`` or ``"varifocal"``.

    Raises:
        ConfigError: An unknown ``cls_loss``.
    """

    def __init__(
        self,
        assigner: TaskAlignedAssigner | None = None,
        gains: LossGains = LossGains(),
        cls_loss: str = "bce",
    ) -> None:
        if cls_loss not in CLS_LOSSES:
            raise ConfigError(
                f"unknown classification loss {cls_loss!r}; expected one of {CLS_LOSSES}",
                field="cls_loss",
            )
        self.assigner = assigner or TaskAlignedAssigner()
        self.gains = gains
        self.cls_loss = cls_loss

    def __call__(
        self,
        cls_logits: torch.Tensor,
        box_logits: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one batch.

        Args:
            cls_logits: ``[B, N, K]`` class logits.
            box_logits: ``[B, N, 4, R]`` side-distribution logits.
            points: ``[N, 2]`` anchor point centres, pixels of the network input.
            strides: ``[N]`` their strides.
            targets: Per image ``"boxes"`` ``[M, 4]`` ``xyxy`` in network-input pixels and
                ``"labels"`` ``int64`` ``[M]`` (``M`` may be 0).

        Returns:
            ``{"loss_cls", "loss_box", "loss_dfl"}``, scalar tensors already weighted by
            :class:`LossGains`.
        """
        distances = expected_distances(box_logits.float()) * strides[:, None]
        boxes = distances_to_boxes(points, distances)
        scores = cls_logits.detach().float().sigmoid()
        assigned = [
            self.assigner(scores[i], boxes[i].detach(), points, t["boxes"], t["labels"])
            for i, t in enumerate(targets)
        ]
        target_scores = torch.stack([a.target_scores for a in assigned])
        positive = torch.stack([a.positive for a in assigned])
        gt_boxes = torch.stack([a.boxes for a in assigned]).to(boxes.dtype)
        total = target_scores.sum().clamp(min=1.0)
        weight = target_scores.sum(dim=-1)[positive]
        return {
            "loss_cls": self.gains.cls * self._classification(cls_logits, target_scores) / total,
            "loss_box": self.gains.box
            * (ciou_loss(boxes[positive], gt_boxes[positive]) * weight).sum()
            / total,
            "loss_dfl": self.gains.dfl
            * self._dfl(box_logits[positive], points, strides, positive, gt_boxes, weight)
            / total,
        }

    def _classification(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The summed classification loss over every point and class."""
        logits = logits.float()
        if self.cls_loss == "varifocal":
            return varifocal_loss(logits, targets, reduction="sum")
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")

    @staticmethod
    def _dfl(
        logits: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        positive: torch.Tensor,
        gt_boxes: torch.Tensor,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        """Distribution focal loss of the positives' ``[P, 4, R]`` logits, summed with
        ``weight [P]``: cross-entropy towards the two bins around each true distance,
        weighted by closeness (a distance of 2.3 bins is 70 % bin 2 and 30 % bin 3)."""
        reg_max = logits.shape[-1]
        point_index = positive.nonzero()[:, 1]
        target = boxes_to_distances(points[point_index], gt_boxes[positive])
        target = (target / strides[point_index, None]).clamp(0, reg_max - 1.01)
        left = target.floor().long()
        right_weight = target - left
        log_probs = logits.float().log_softmax(dim=-1)
        loss = -(
            log_probs.gather(-1, left[..., None])[..., 0] * (1 - right_weight)
            + log_probs.gather(-1, left[..., None] + 1)[..., 0] * right_weight
        )
        return (loss.mean(dim=-1) * weight).sum()
