"""Tests for visionkit.ops.matching: brute-force optimality and DETR's matchers in transformers."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher
from transformers.loss.loss_for_object_detection import HungarianMatcher as DetrHungarianMatcher

from visionkit.errors import ConfigError
from visionkit.ops.matching import HungarianMatcher, hungarian_match


def brute_force_min_cost(cost: torch.Tensor) -> float:
    """The least total cost of a one-to-one assignment, by trying every one."""
    if cost.shape[0] > cost.shape[1]:
        cost = cost.T
    n, m = cost.shape
    values = cost.tolist()
    assignments = itertools.permutations(range(m), n)  # the column of each row
    return min(sum(values[i][j] for i, j in enumerate(cols)) for cols in assignments)


SHAPES = [(1, 1), (4, 4), (5, 5), (3, 6), (6, 3), (1, 5), (5, 1), (2, 7)]


@pytest.mark.parametrize(("n", "m"), SHAPES)
def test_hungarian_match_is_optimal(n: int, m: int) -> None:
    gen = torch.Generator().manual_seed(10 * n + m)
    for _ in range(3):
        cost = torch.randn(n, m, generator=gen, dtype=torch.float64)
        rows, cols = hungarian_match(cost)
        assert rows.dtype == cols.dtype == torch.int64
        assert len(rows) == len(cols) == min(n, m)
        assert rows.tolist() == sorted(set(rows.tolist()))  # sorted, each row once
        assert len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum().item() == pytest.approx(brute_force_min_cost(cost), abs=1e-12)


def test_hungarian_match_by_hand() -> None:
    # the greedy choice (0 -> 1 at cost 0) is not the best: 0 -> 0 and 1 -> 1 cost 2
    rows, cols = hungarian_match(torch.tensor([[1.0, 0.0], [5.0, 1.0]]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_hungarian_match_empty(shape: tuple[int, int]) -> None:
    rows, cols = hungarian_match(torch.zeros(shape))
    assert rows.shape == cols.shape == (0,) and rows.dtype == torch.int64


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_hungarian_match_refuses_non_finite_cost(bad: float) -> None:
    cost = torch.zeros(3, 3)
    cost[1, 2] = bad
    with pytest.raises(ConfigError, match="field 'cost': cost holds NaN or inf"):
        hungarian_match(cost)
    with pytest.raises(ConfigError, match=r"shape \[N, M\]"):
        hungarian_match(torch.zeros(3))


def random_detr_batch(seed: int, sizes: list[int], queries: int = 12, classes: int = 5):
    """DETR-style outputs and targets: logits, normalised cxcywh boxes, ``sizes`` objects."""
    gen = torch.Generator().manual_seed(seed)

    def boxes(*shape: int) -> torch.Tensor:
        centre = torch.rand(*shape, 2, generator=gen) * 0.6 + 0.2
        size = torch.rand(*shape, 2, generator=gen) * 0.35 + 0.05
        return torch.cat([centre, size], dim=-1)

    logits = torch.randn(len(sizes), queries, classes, generator=gen) * 2
    targets = [
        {"labels": torch.randint(0, classes, (n,), generator=gen), "boxes": boxes(n)} for n in sizes
    ]
    return logits, boxes(len(sizes), queries), targets


@pytest.mark.parametrize(
    ("focal", "reference"), [(False, DetrHungarianMatcher), (True, DeformableDetrHungarianMatcher)]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_agrees_with_transformers(focal: bool, reference, seed: int) -> None:
    # 0 objects, a few, and more objects than queries
    logits, pred_boxes, targets = random_detr_batch(seed, sizes=[3, 0, 7, 15])
    ours = HungarianMatcher(class_weight=2.0, bbox_weight=5.0, giou_weight=2.0, focal=focal)
    theirs = reference(class_cost=2.0, bbox_cost=5.0, giou_cost=2.0)
    hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    expected = theirs({"logits": logits, "pred_boxes": pred_boxes}, hf_targets)
    matches = ours(logits, pred_boxes, targets)
    assert len(matches) == 4
    for (pred_idx, target_idx), (hf_pred, hf_target), target in zip(
        matches, expected, targets, strict=True
    ):
        assert len(pred_idx) == min(12, len(target["labels"]))
        assert pred_idx.tolist() == hf_pred.tolist()
        assert target_idx.tolist() == hf_target.tolist()


def test_matcher_cost_terms_by_hand() -> None:
    # one query, one object: cost = -p(class) + 5 * L1 - 2 * GIoU
    logits = torch.tensor([[0.0, 0.0]])
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = torch.tensor([[0.6, 0.5, 0.2, 0.2]])  # shifted by half its width: IoU 1/3
    giou = 1 / 3 - (0.3 * 0.2 - 2 * 0.04 + 0.02) / (0.3 * 0.2)
    expected = -0.5 + 5 * 0.1 - 2 * giou
    cost = HungarianMatcher().cost(logits, pred, torch.tensor([1]), box)
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(expected, abs=1e-6)


def test_matcher_prefers_the_right_class_and_place() -> None:
    logits = torch.tensor([[[4.0, -4.0], [-4.0, 4.0], [0.0, 0.0]]])
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]]])
    targets = [{"labels": torch.tensor([1, 0]), "boxes": boxes[0, [1, 0]]}]
    for focal in (False, True):
        ((pred_idx, target_idx),) = HungarianMatcher(focal=focal)(logits, boxes, targets)
        assert pred_idx.tolist() == [0, 1] and target_idx.tolist() == [1, 0]


def test_matcher_with_no_objects_anywhere() -> None:
    logits, pred_boxes, targets = random_detr_batch(seed=3, sizes=[0, 0])
    for pred_idx, target_idx in HungarianMatcher()(logits, pred_boxes, targets):
        assert pred_idx.shape == target_idx.shape == (0,)
        assert pred_idx.dtype == torch.int64


def test_matcher_refuses_bad_inputs() -> None:
    logits, pred_boxes, targets = random_detr_batch(seed=4, sizes=[2, 1])
    matcher = HungarianMatcher()
    with pytest.raises(ConfigError, match="one target per image"):
        matcher(logits, pred_boxes, targets[:1])
    with pytest.raises(ConfigError, match="field 'pred_boxes'"):
        matcher(logits, pred_boxes[:, :5], targets)
    bad = [targets[0], {"labels": torch.tensor([5]), "boxes": targets[1]["boxes"]}]
    with pytest.raises(ConfigError, match=r"target 1: field 'labels': labels must be in 0..4"):
        matcher(logits, pred_boxes, bad)
    with pytest.raises(ConfigError, match="target 0: needs 'labels' and 'boxes'"):
        matcher(logits, pred_boxes, [{"boxes": targets[0]["boxes"]}, targets[1]])
    with pytest.raises(ConfigError, match="cost holds NaN"):
        matcher(torch.full_like(logits, float("nan")), pred_boxes, targets)
    with pytest.raises(ConfigError, match="field 'weight'"):
        HungarianMatcher(class_weight=0, bbox_weight=0, giou_weight=0)
