"""The yolo loss: zero for perfect predictions, background only without objects, DFL by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.errors import ConfigError
from visionkit.models.detect._yolo_assign import TaskAlignedAssigner
from visionkit.models.detect._yolo_blocks import anchor_points
from visionkit.models.detect._yolo_loss import YoloLoss

REG_MAX = 8


def _inputs(num_classes: int = 2) -> tuple[torch.Tensor, ...]:
    """Anchor points of a 64 x 64 input; every point predicts distances of exactly 2 bins."""
    points, strides = anchor_points([(8, 8), (4, 4), (2, 2)], torch.device("cpu"), torch.float32)
    box_logits = torch.full((1, len(points), 4, REG_MAX), -30.0)
    box_logits[..., 2] = 30.0
    cls_logits = torch.full((1, len(points), num_classes), -30.0)
    return cls_logits, box_logits, points, strides


def test_a_perfect_prediction_costs_nothing() -> None:
    cls_logits, box_logits, points, strides = _inputs()
    # point 18 is (20, 20) at stride 8: 2 bins on each side is the box (4, 4, 36, 36)
    target = {"boxes": torch.tensor([[4.0, 4.0, 36.0, 36.0]]), "labels": torch.tensor([1])}
    cls_logits[0, 18, 1] = 30.0
    loss = YoloLoss(TaskAlignedAssigner(topk=1))(cls_logits, box_logits, points, strides, [target])
    assert all(value.item() == pytest.approx(0, abs=1e-6) for value in loss.values())
    cls_logits[0, 18, 1] = -30.0  # right box, wrong belief: only the classification term
    loss = YoloLoss(TaskAlignedAssigner(topk=1))(cls_logits, box_logits, points, strides, [target])
    assert loss["loss_cls"].item() > 1 and loss["loss_box"].item() < 1e-6


def test_without_objects_only_background_classification_counts() -> None:
    cls_logits, box_logits, points, strides = _inputs()
    cls_logits = torch.zeros_like(cls_logits, requires_grad=True)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    loss = YoloLoss()(cls_logits, box_logits, points, strides, [empty])
    assert loss["loss_box"].item() == 0 and loss["loss_dfl"].item() == 0
    expected = 0.5 * cls_logits.numel() * math.log(2)  # BCE of logit 0 against 0, gain 0.5
    assert loss["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


def test_distribution_focal_loss_splits_the_target_between_two_bins() -> None:
    logits = torch.randn(1, 4, REG_MAX)
    points, strides = torch.tensor([[20.0, 20.0]]), torch.tensor([8.0])
    box = torch.tensor([[20.0 - 2.25 * 8, 20.0 - 8, 20.0 + 8 * 5, 20.0 + 8 * 6.5]])
    loss = YoloLoss._dfl(logits, points, strides, torch.tensor([[True]]), box[None], torch.ones(1))
    log_p = F.log_softmax(logits[0], dim=-1)
    expected = -torch.stack(
        [
            0.75 * log_p[0, 2] + 0.25 * log_p[0, 3],
            log_p[1, 1],
            log_p[2, 5],
            0.5 * log_p[3, 6] + 0.5 * log_p[3, 7],
        ]
    ).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_varifocal_classification_and_unknown_losses() -> None:
    cls_logits, box_logits, points, strides = _inputs()
    target = {"boxes": torch.tensor([[4.0, 4.0, 36.0, 36.0]]), "labels": torch.tensor([0])}
    loss = YoloLoss(cls_loss="varifocal")(cls_logits, box_logits, points, strides, [target])
    assert loss["loss_cls"].item() > 0
    with pytest.raises(ConfigError, match="focal"):
        YoloLoss(cls_loss="focal")
