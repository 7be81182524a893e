"""Task-aligned assignment: candidates inside the box, the best-aligned chosen, targets scaled."""

from __future__ import annotations

import pytest
import torch

from visionkit.models.detect._yolo_assign import TaskAlignedAssigner
from visionkit.models.detect._yolo_blocks import anchor_points


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    """The anchor points of a 64 x 64 input: 8 x 8 at stride 8, 4 x 4 at 16, 2 x 2 at 32."""
    return anchor_points([(8, 8), (4, 4), (2, 2)], torch.device("cpu"), torch.float32)


def _boxes_around(points: torch.Tensor, half: float) -> torch.Tensor:
    return torch.cat([points - half, points + half], dim=1)


def test_anchor_points_are_cell_centres_finest_level_first() -> None:
    points, strides = _grid()
    assert points.shape == (84, 2) and strides.tolist() == [8.0] * 64 + [16.0] * 16 + [32.0] * 4
    assert points[0].tolist() == [4.0, 4.0] and points[1].tolist() == [12.0, 4.0]
    assert points[8].tolist() == [4.0, 12.0] and points[-1].tolist() == [48.0, 48.0]


def test_an_object_takes_the_best_aligned_points_inside_its_box() -> None:
    points, _ = _grid()
    gt = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    boxes = _boxes_around(points, 4.0)  # small boxes: poor overlap everywhere...
    best = [9, 18, 64]  # ...except at three points inside the object (two levels)
    boxes[best] = gt
    scores = torch.full((84, 2), 0.5)
    assigned = TaskAlignedAssigner(topk=3)(scores, boxes, points, gt, torch.tensor([1]))
    assert assigned.positive.nonzero().flatten().tolist() == best
    inside = (points > 0).all(1) & (points < 32).all(1)
    assert inside[assigned.positive].all()
    assert assigned.gt_index[best].tolist() == [0, 0, 0]
    targets = assigned.target_scores
    assert targets[:, 0].sum() == 0 and targets[~assigned.positive].sum() == 0
    assert torch.allclose(targets[best, 1], torch.ones(3))  # aligned and IoU 1: target 1


def test_class_scores_steer_the_choice() -> None:
    points, _ = _grid()
    gt = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    boxes = gt.expand(84, 4).clone()  # every box is perfect
    scores = torch.full((84, 2), 0.1)
    scores[[0, 27], 1] = 0.9  # two points believe in the object's class
    assigned = TaskAlignedAssigner(topk=2)(scores, boxes, points, gt, torch.tensor([1]))
    assert assigned.positive.nonzero().flatten().tolist() == [0, 27]


def test_targets_scale_each_objects_best_point_to_its_best_iou() -> None:
    points, _ = _grid()
    gt = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    boxes = gt.expand(84, 4).clone()
    boxes[:, 2:] = 24.0  # IoU 0.5625 everywhere
    boxes[9, 2:] = 28.0  # IoU 0.765625 at point 9
    assigned = TaskAlignedAssigner(topk=4)(
        torch.full((84, 2), 0.5), boxes, points, gt, torch.tensor([0])
    )
    targets = assigned.target_scores[assigned.positive, 0]
    assert len(targets) == 4 and targets.max().item() == pytest.approx(0.765625)
    assert targets.sort().values[:3].tolist() == pytest.approx(
        [0.765625 * (0.5625 / 0.765625) ** 6] * 3
    )


def test_a_point_wanted_by_two_objects_goes_to_the_one_its_box_overlaps_most() -> None:
    points, _ = _grid()
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [8.0, 8.0, 24.0, 24.0]])
    boxes = _boxes_around(points, 8.0)  # 16 x 16 boxes: the small object's size
    assigned = TaskAlignedAssigner(topk=84)(
        torch.full((84, 3), 0.5), boxes, points, gts, torch.tensor([0, 2])
    )
    # point 18 (centre (20, 20)) lies inside both; its box overlaps the small one more
    assert assigned.positive[18] and assigned.gt_index[18] == 1
    assert assigned.target_scores[18, 2] > 0 and assigned.target_scores[18, 0] == 0


def test_a_tiny_object_gets_the_nearest_point_and_no_object_gets_none() -> None:
    points, _ = _grid()
    tiny = torch.tensor([[10.0, 10.0, 12.0, 12.0]])  # no cell centre inside
    boxes = _boxes_around(points, 4.0)
    scores = torch.full((84, 1), 0.5)
    assigned = TaskAlignedAssigner()(scores, boxes, points, tiny, torch.tensor([0]))
    assert assigned.positive.sum() == 1 and points[assigned.positive].tolist() == [[12.0, 12.0]]
    empty = TaskAlignedAssigner()(
        scores, boxes, points, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    )
    assert not empty.positive.any() and empty.target_scores.sum() == 0
