"""Tests for visionkit.ops.losses: values and gradients held to torchvision.ops."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.ops

from visionkit.errors import ConfigError, DataError
from visionkit.ops.losses import (
    ciou_loss,
    class_shares,
    dice_loss,
    diou_loss,
    giou_loss,
    sigmoid_focal_loss,
    soft_cross_entropy,
    soft_dice_loss,
    varifocal_loss,
)

BOX_LOSSES = {
    giou_loss: torchvision.ops.generalized_box_iou_loss,
    diou_loss: torchvision.ops.distance_box_iou_loss,
    ciou_loss: torchvision.ops.complete_box_iou_loss,
}
REDUCTIONS = ["none", "mean", "sum"]

# Degenerate pairs (xyxy, first box and second box) where torchvision's loss and gradient
# are well defined: identical boxes, a zero-width box inside a box, boxes that only touch.
DEGENERATE = [
    ([2.0, 3.0, 7.0, 9.0], [2.0, 3.0, 7.0, 9.0]),
    ([4.0, 2.0, 4.0, 8.0], [1.0, 1.0, 9.0, 9.0]),
    ([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]),
    ([0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 3.0]),
]
# Degenerate pairs where torchvision gives NaN values or gradients, or gradients of order
# 1 / eps: a flat box (CIoU), a point (CIoU), two identical points, two identical
# zero-width boxes (GIoU). Ours stay finite and small, and the values are the limits.
SINGULAR = [
    ([1.0, 4.0, 6.0, 4.0], [0.0, 0.0, 8.0, 8.0]),
    ([3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 8.0, 8.0]),
    ([5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]),
    ([5.0, 2.0, 5.0, 6.0], [5.0, 2.0, 5.0, 6.0]),
]


def random_pairs(n: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple:
    """Two ``[n, 4]`` xyxy box sets, overlapping about half the time, plus DEGENERATE."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, n, 2, generator=gen, dtype=dtype) * 60
    wh = torch.rand(2, n, 2, generator=gen, dtype=dtype) * 40 + 0.5
    a, b = torch.cat([xy, xy + wh], dim=-1)
    degenerate = torch.tensor(DEGENERATE, dtype=dtype)
    return torch.cat([a, degenerate[:, 0]]), torch.cat([b, degenerate[:, 1]])


def loss_and_grads(fn, inputs: tuple, reduction: str, **kwargs) -> tuple:
    """The loss and the gradients of a fixed random weighting of it w.r.t. every input."""
    leaves = [x.clone().requires_grad_() for x in inputs]
    loss = fn(*leaves, reduction=reduction, **kwargs)
    weights = torch.rand(loss.shape, generator=torch.Generator().manual_seed(9), dtype=loss.dtype)
    grads = torch.autograd.grad((loss * (weights + 0.5)).sum(), leaves)
    return loss.detach(), grads


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("ours", "reference"), list(BOX_LOSSES.items()))
def test_box_losses_match_torchvision(ours, reference, reduction: str) -> None:
    boxes = random_pairs(64, seed=0)
    assert (torchvision.ops.box_iou(*boxes).diagonal() > 0).float().mean() > 0.3
    loss, grads = loss_and_grads(ours, boxes, reduction)
    expected, expected_grads = loss_and_grads(reference, boxes, reduction)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("ours", "reference"), list(BOX_LOSSES.items()))
def test_box_losses_match_torchvision_in_float32(ours, reference) -> None:
    boxes = random_pairs(64, seed=1, dtype=torch.float32)
    loss, grads = loss_and_grads(ours, boxes, "none")
    expected, expected_grads = loss_and_grads(reference, boxes, "none")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fn", list(BOX_LOSSES))
def test_box_losses_are_finite_where_torchvision_is_singular(fn) -> None:
    a, b = torch.tensor(SINGULAR).unbind(1)
    loss, grads = loss_and_grads(fn, (a, b), "none")
    assert torch.isfinite(loss).all()
    for grad in grads:
        assert torch.isfinite(grad).all() and grad.abs().max() < 10
    # two identical points and two identical lines: no overlap, no distance, no enclosure
    torch.testing.assert_close(loss[2:], torch.ones(2))


def test_ciou_of_a_flat_box_takes_the_limit_aspect_angle() -> None:
    # torchvision's value exists (arctan(w / 0) = pi / 2), only its gradient is NaN
    flat, box = torch.tensor(SINGULAR[:1]).unbind(1)
    expected = torchvision.ops.complete_box_iou_loss(flat, box)
    torch.testing.assert_close(ciou_loss(flat, box), expected)


def test_box_losses_by_hand() -> None:
    # Unit squares one unit apart: GIoU = -1/3, DIoU = -0.4 (as in test_boxes).
    a, b = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    torch.testing.assert_close(giou_loss(a, b), torch.tensor([4 / 3]))
    torch.testing.assert_close(diou_loss(a, b), torch.tensor([1.4]))
    torch.testing.assert_close(ciou_loss(a, b), torch.tensor([1.4]))  # same aspect: v = 0


@pytest.mark.parametrize("fn", list(BOX_LOSSES))
def test_box_losses_of_no_boxes(fn) -> None:
    empty = torch.zeros((0, 4), requires_grad=True)
    assert fn(empty, empty).shape == (0,)
    for reduction in ("mean", "sum"):
        loss = fn(empty, empty, reduction=reduction)
        assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("fn", list(BOX_LOSSES))
def test_box_losses_refuse_unpaired_boxes(fn) -> None:
    with pytest.raises(ConfigError, match="as many boxes"):
        fn(torch.zeros((2, 4)), torch.zeros((3, 4)))
    with pytest.raises(ConfigError, match="field 'b'"):
        fn(torch.zeros((2, 4)), torch.zeros(4))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1, 1.5), (0.6, 0.0)])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_loss_matches_torchvision(reduction: str, alpha: float, gamma: float, soft) -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 3
    targets = torch.rand(50, 7, generator=gen, dtype=torch.float64)
    targets = targets if soft else (targets > 0.8).double()
    kwargs = {"alpha": alpha, "gamma": gamma}
    loss, grads = loss_and_grads(sigmoid_focal_loss, (logits, targets), reduction, **kwargs)
    expected, expected_grads = loss_and_grads(
        torchvision.ops.sigmoid_focal_loss, (logits, targets), reduction, **kwargs
    )
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)


def test_focal_loss_refuses_bad_alpha_and_shapes() -> None:
    with pytest.raises(ConfigError, match="field 'alpha'"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), alpha=1.5)
    with pytest.raises(ConfigError, match="field 'targets'"):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(4))


def varifocal_by_hand(logit: float, q: float, alpha: float = 0.75, gamma: float = 2.0) -> float:
    """The paper's formula for one element, in plain floats."""
    p = 1 / (1 + math.exp(-logit))
    bce = -(q * math.log(p) + (1 - q) * math.log(1 - p))
    weight = q if q > 0 else alpha * p**gamma
    return weight * bce


def test_varifocal_loss_by_hand() -> None:
    # (logit, quality): positives with their IoU target, negatives at 0
    cases = [(2.0, 0.8), (-1.0, 0.0), (0.5, 0.3), (0.0, 0.0), (-3.0, 0.95), (4.0, 0.0)]
    x, q = torch.tensor(cases).T
    expected = torch.tensor([varifocal_by_hand(*case) for case in cases])
    torch.testing.assert_close(varifocal_loss(x, q, reduction="none"), expected)
    torch.testing.assert_close(varifocal_loss(x, q), expected.sum())  # "sum" is the default
    torch.testing.assert_close(varifocal_loss(x, q, reduction="mean"), expected.mean())
    other = torch.tensor([varifocal_by_hand(*case, alpha=0.5, gamma=1.0) for case in cases])
    torch.testing.assert_close(varifocal_loss(x, q, alpha=0.5, gamma=1.0, reduction="none"), other)


def test_varifocal_loss_is_focal_on_negatives_and_quality_weighted_bce_on_positives() -> None:
    x = torch.randn(40, generator=torch.Generator().manual_seed(5)) * 3
    zeros = torch.zeros(40)
    # RetinaNet's negatives weigh (1 - 0.25) p^2: VFL's alpha = 0.75 is the same weight
    torch.testing.assert_close(
        varifocal_loss(x, zeros, reduction="none"), sigmoid_focal_loss(x, zeros)
    )
    q = torch.linspace(0.05, 1.0, 40)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, q, reduction="none")
    torch.testing.assert_close(varifocal_loss(x, q, reduction="none"), q * bce)


def test_varifocal_loss_is_differentiable() -> None:
    x = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    q = torch.tensor([0.0, 0.7] * 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: varifocal_loss(v, q), (x.requires_grad_(),))


@pytest.mark.parametrize(
    "call",
    [
        lambda r: sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction=r),
        lambda r: varifocal_loss(torch.zeros(2), torch.zeros(2), reduction=r),
        lambda r: giou_loss(torch.zeros((1, 4)), torch.zeros((1, 4)), reduction=r),
        lambda r: diou_loss(torch.zeros((1, 4)), torch.zeros((1, 4)), reduction=r),
        lambda r: ciou_loss(torch.zeros((1, 4)), torch.zeros((1, 4)), reduction=r),
    ],
)
def test_losses_refuse_unknown_reduction(call) -> None:
    with pytest.raises(ConfigError, match="field 'reduction': unknown reduction 'avg'"):
        call("avg")


def _logits_of(probs: list[list[float]]) -> torch.Tensor:
    """Logits ``[1, C, 1, N]`` whose softmax over ``C`` is ``probs`` (``[N][C]``)."""
    return torch.tensor(probs, dtype=torch.float64).log().T[None, :, None, :]


def test_dice_loss_by_hand_leaves_ignored_pixels_out() -> None:
    # pixel 1: p = (0.75, 0.25), target 0; pixel 2: (0.5, 0.5), target 1; pixel 3 ignored.
    logits = _logits_of([[0.75, 0.25], [0.5, 0.5], [0.9, 0.1]]).requires_grad_()
    targets = torch.tensor([[[0, 1, 255]]])
    # class 0: 2 * 0.75 / (1.25 + 1) = 2/3; class 1: 2 * 0.5 / (0.75 + 1) = 4/7
    expected = 1 - (2 / 3 + 4 / 7) / 2
    loss = dice_loss(logits, targets)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert logits.grad[..., 2].abs().max() == 0  # the ignored pixel gets no gradient
    assert logits.grad[..., :2].abs().min() > 0
    other = _logits_of([[0.75, 0.25], [0.5, 0.5], [0.01, 0.99]])
    assert dice_loss(other, targets).item() == pytest.approx(expected, abs=1e-6)


def test_dice_loss_averages_over_the_classes_present_only() -> None:
    # class 2 is in no target: its probability mass only shrinks the others' intersection.
    logits = _logits_of([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]])
    targets = torch.tensor([[[0, 1]]])
    per_class = 2 * 0.5 / (0.75 + 1)  # both classes alike
    assert dice_loss(logits, targets).item() == pytest.approx(1 - per_class, abs=1e-6)


def test_dice_loss_sums_over_the_whole_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=generator)
    targets = torch.randint(0, 4, (2, 5, 6), generator=generator)
    targets[0, 0, :3] = 255
    side_by_side = torch.cat(list(logits), dim=-1)[None]  # one image [1, 4, 5, 12]
    joined = torch.cat(list(targets), dim=-1)[None]
    assert dice_loss(logits, targets).item() == pytest.approx(
        dice_loss(side_by_side, joined).item(), abs=1e-6
    )


def test_dice_loss_is_zero_for_a_confident_right_answer_and_for_no_valid_pixel() -> None:
    targets = torch.tensor([[[0, 1], [2, 2]]])
    logits = 50.0 * torch.nn.functional.one_hot(targets, 3).permute(0, 3, 1, 2).float()
    assert dice_loss(logits, targets).item() == pytest.approx(0.0, abs=1e-6)
    wrong = 50.0 * torch.nn.functional.one_hot((targets + 1) % 3, 3).permute(0, 3, 1, 2).float()
    assert dice_loss(wrong, targets).item() == pytest.approx(1.0, abs=1e-6)
    unlabelled = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = dice_loss(unlabelled, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0 and unlabelled.grad.abs().max() == 0


def test_dice_loss_refuses_labels_out_of_range_and_unfit_shapes() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    with pytest.raises(DataError, match=r"target values \[3, 7\] are outside 0..2"):
        dice_loss(logits, torch.tensor([[[0, 3], [7, 255]]]))
    with pytest.raises(ConfigError, match="field 'targets'"):
        dice_loss(logits, torch.zeros(1, 2, 3, dtype=torch.int64))


def test_class_shares_average_each_cell_and_leave_ignored_pixels_out() -> None:
    targets = torch.tensor([[[0, 0, 1, 1], [0, 2, 1, 255], [2, 2, 255, 255], [2, 2, 255, 255]]])
    shares = class_shares(targets, 3, (2, 2))
    expected = torch.tensor(  # [C, 2, 2]: top-left, top-right, bottom-left, bottom-right
        [[[0.75, 0.0], [0.0, 0.0]], [[0.0, 0.75], [0.0, 0.0]], [[0.25, 0.0], [1.0, 0.0]]]
    )
    assert torch.equal(shares[0], expected)
    assert torch.equal(class_shares(targets, 3), class_shares(targets, 3, (4, 4)))
    assert class_shares(targets, 3).sum(dim=1).tolist() == (targets != 255).float().tolist()
    uneven = class_shares(targets, 3, (3, 3))  # overlapping 2x2 cells, as adaptive pooling
    assert uneven[0, :, 0, 0].tolist() == pytest.approx([0.75, 0.0, 0.25])
    assert uneven[0, :, 1, 1].tolist() == pytest.approx([0.0, 0.25, 0.5])


def test_class_shares_of_equal_cells_pool_the_one_hot_targets_of_every_image() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 5, (3, 24, 32), generator=generator)
    targets[torch.rand(targets.shape, generator=generator) < 0.2] = 255
    onehot = torch.nn.functional.one_hot(targets.clamp(max=4), 5).permute(0, 3, 1, 2).float()
    onehot *= (targets != 255)[:, None]
    for size in ((6, 8), (12, 4), (1, 1)):
        expected = torch.nn.functional.adaptive_avg_pool2d(onehot, size)
        torch.testing.assert_close(class_shares(targets.to(torch.uint8), 5, size), expected)


def test_class_shares_refuse_labels_out_of_range_and_unfit_shapes() -> None:
    with pytest.raises(DataError, match=r"target values \[4\] are outside 0..2"):
        class_shares(torch.tensor([[[0, 4]]]), 3, (1, 1))
    with pytest.raises(ConfigError, match="field 'targets'"):
        class_shares(torch.zeros(2, 2, dtype=torch.int64), 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_soft_cross_entropy_of_one_hot_shares_is_torch_cross_entropy(smoothing) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=generator)
    targets = torch.randint(0, 4, (2, 5, 6), generator=generator)
    targets[0, :2] = 255
    expected = torch.nn.functional.cross_entropy(
        logits, targets, ignore_index=255, label_smoothing=smoothing
    )
    found = soft_cross_entropy(logits, class_shares(targets, 4), smoothing)
    assert found.item() == pytest.approx(expected.item(), abs=1e-6)


def test_soft_cross_entropy_of_a_mixed_cell_by_hand() -> None:
    # one cell, p = (0.5, 0.25, 0.25), shares (0.25, 0.5, 0): 3/4 of its pixels labelled
    logits = _logits_of([[0.5, 0.25, 0.25]])
    shares = torch.tensor([0.25, 0.5, 0.0], dtype=torch.float64)[None, :, None, None]
    expected = -(0.25 * math.log(0.5) + 0.5 * math.log(0.25)) / 0.75
    assert soft_cross_entropy(logits, shares).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ConfigError, match="field 'shares'"):
        soft_cross_entropy(logits, shares[:, :2])


def test_soft_dice_weighs_a_cell_by_its_labelled_share() -> None:
    # cell 1: p = (0.75, 0.25), shares (0.5, 0) (half ignored); cell 2: p = (0.5, 0.5),
    # shares (0, 1). Probabilities count times the labelled share: cell 1's are halved.
    logits = _logits_of([[0.75, 0.25], [0.5, 0.5]])
    shares = torch.tensor([[0.5, 0.0], [0.0, 1.0]], dtype=torch.float64).T[None, :, None, :]
    class_0 = 2 * (0.375 * 0.5) / ((0.375 + 0.5) + 0.5)
    class_1 = 2 * 0.5 / ((0.125 + 0.5) + 1.0)
    expected = 1 - (class_0 + class_1) / 2
    assert soft_dice_loss(logits, shares).item() == pytest.approx(expected, abs=1e-6)
