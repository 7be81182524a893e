"""Tests for visionkit.ops.boxes: conversions, the IoU family (held to torchvision) and NMS."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.ops

from visionkit.errors import ConfigError
from visionkit.ops.boxes import (
    BOX_FORMATS,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    nms,
    paired_box_iou,
    paired_complete_box_iou,
    paired_distance_box_iou,
    paired_generalized_box_iou,
    valid_boxes,
)

IOU_FAMILY = {
    box_iou: torchvision.ops.box_iou,
    generalized_box_iou: torchvision.ops.generalized_box_iou,
    distance_box_iou: torchvision.ops.distance_box_iou,
    complete_box_iou: torchvision.ops.complete_box_iou,
}
PAIRED = {
    paired_box_iou: box_iou,
    paired_generalized_box_iou: generalized_box_iou,
    paired_distance_box_iou: distance_box_iou,
    paired_complete_box_iou: complete_box_iou,
}


def random_boxes(n: int, seed: int) -> torch.Tensor:
    """``[n, 4]`` float32 xyxy boxes with positive size, overlapping often."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 100
    wh = torch.rand(n, 2, generator=gen) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_importing_ops_does_not_import_torch() -> None:
    code = (
        "import sys, visionkit.ops.boxes, visionkit.ops.masks; "
        "print(sorted({'torch', 'torchvision', 'cv2'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("in_fmt", "out_fmt"), list(itertools.permutations(BOX_FORMATS, 2)))
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_box_convert_round_trip(in_fmt: str, out_fmt: str, backend: str) -> None:
    boxes = box_convert(random_boxes(7, seed=0).double(), "xyxy", in_fmt)
    if backend == "numpy":
        boxes = boxes.numpy()
    converted = box_convert(boxes, in_fmt, out_fmt)
    assert type(converted) is type(boxes)
    back = box_convert(converted, out_fmt, in_fmt)
    np.testing.assert_allclose(np.asarray(back), np.asarray(boxes), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("in_fmt", "out_fmt"), list(itertools.permutations(BOX_FORMATS, 2)))
def test_box_convert_matches_torchvision(in_fmt: str, out_fmt: str) -> None:
    boxes = box_convert(random_boxes(7, seed=1), "xyxy", in_fmt)
    expected = torchvision.ops.box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(box_convert(boxes, in_fmt, out_fmt), expected)


def test_box_convert_hand_values() -> None:
    xyxy = np.array([[10.0, 20.0, 40.0, 60.0]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "xywh"), [[10, 20, 30, 40]])
    np.testing.assert_array_equal(box_convert(xyxy, "xyxy", "cxcywh"), [[25, 40, 30, 40]])


def test_box_convert_rejects_unknown_format() -> None:
    with pytest.raises(ConfigError, match="unknown box format 'xyz'"):
        box_convert(np.zeros((1, 4)), "xyz", "xyxy")


@pytest.mark.parametrize("backend", [np.asarray, torch.as_tensor])
def test_box_area_valid_and_clip_by_hand(backend) -> None:
    boxes = backend([[0.0, 0.0, 2.0, 3.0], [5.0, 5.0, 5.0, 8.0], [-4.0, 2.0, 30.0, 50.0]])
    assert np.asarray(box_area(boxes)).tolist() == [6.0, 0.0, 34.0 * 48.0]
    assert np.asarray(valid_boxes(boxes)).tolist() == [True, False, True]
    clipped = clip_boxes(boxes, height=40, width=20)
    assert type(clipped) is type(boxes)
    assert np.asarray(clipped).tolist() == [[0, 0, 2, 3], [5, 5, 5, 8], [0, 2, 20, 40]]
    assert np.asarray(boxes)[2, 0] == -4.0  # the input is left alone


def test_clip_boxes_outside_image_becomes_invalid() -> None:
    clipped = clip_boxes(torch.tensor([[120.0, 10.0, 150.0, 20.0]]), height=50, width=100)
    assert clipped.tolist() == [[100.0, 10.0, 100.0, 20.0]]
    assert not valid_boxes(clipped).item()


@pytest.mark.parametrize(("ours", "reference"), list(IOU_FAMILY.items()))
def test_iou_family_matches_torchvision(ours, reference) -> None:
    a, b = random_boxes(40, seed=2), random_boxes(30, seed=3)
    expected = reference(a, b)
    assert expected.shape == (40, 30) and (expected > 0).any()  # the sample does overlap
    torch.testing.assert_close(ours(a, b), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours(a.double().numpy(), b.double().numpy()), expected, atol=1e-6)


def test_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 1.0], [0.0, 0.0, 2.0, 1.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 1.0, 0.0]]))


def test_generalized_and_distance_iou_by_hand() -> None:
    # Unit squares one unit apart: enclosing box 3x1 (area 3, diagonal^2 10), union 2,
    # centres 2 apart: GIoU = 0 - (3 - 2) / 3, DIoU = 0 - 4 / 10.
    a = np.array([[0.0, 0.0, 1.0, 1.0]])
    b = np.array([[2.0, 0.0, 3.0, 1.0]])
    np.testing.assert_allclose(generalized_box_iou(a, b), [[-1 / 3]], rtol=1e-12)
    np.testing.assert_allclose(distance_box_iou(a, b), [[-0.4]], rtol=1e-12)
    np.testing.assert_allclose(generalized_box_iou(a, a), [[1.0]], rtol=1e-12)
    np.testing.assert_allclose(distance_box_iou(a, a), [[1.0]], rtol=1e-12)


@pytest.mark.parametrize("fn", list(IOU_FAMILY))
def test_iou_family_degenerate_boxes_give_zero_not_nan(fn) -> None:
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert fn(point, point).tolist() == [[0.0]]


@pytest.mark.parametrize("fn", list(IOU_FAMILY))
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_iou_family_empty_inputs(fn, backend: str) -> None:
    empty, some = torch.zeros((0, 4)), random_boxes(3, seed=4)
    if backend == "numpy":
        empty, some = empty.numpy(), some.numpy()
    assert fn(empty, some).shape == (0, 3)
    assert fn(some, empty).shape == (3, 0)
    assert fn(empty, empty).shape == (0, 0)


def test_iou_rejects_bad_shapes_and_mixed_types() -> None:
    with pytest.raises(ConfigError, match=r"field 'b': boxes must have shape \[N, 4\], got \[3\]"):
        box_iou(torch.zeros((2, 4)), torch.zeros(3))
    with pytest.raises(
        ConfigError, match="must be numpy arrays or both torch tensors, got ndarray and Tensor"
    ):
        box_iou(np.zeros((2, 4)), torch.zeros((2, 4)))


def test_nms_by_hand() -> None:
    boxes = torch.tensor(
        [[1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]]
    )  # box 0 and box 2 overlap with IoU 0.81
    scores = torch.tensor([0.8, 0.7, 0.9])
    keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [2, 1]
    assert nms(boxes, scores, iou_threshold=0.9).tolist() == [2, 0, 1]


def test_nms_numpy_in_numpy_out() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    keep = nms(boxes, np.array([0.5, 0.6]), 0.5)
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64
    assert keep.tolist() == [1]


def test_batched_nms_is_class_aware() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3 + [[50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.6, 0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]


def test_batched_nms_matches_torchvision_on_random_boxes() -> None:
    boxes = random_boxes(200, seed=5)
    scores = torch.rand(200, generator=torch.Generator().manual_seed(6))
    labels = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(7))
    keep = batched_nms(boxes, scores, labels, 0.4)
    assert keep.tolist() == torchvision.ops.batched_nms(boxes, scores, labels, 0.4).tolist()
    assert (scores[keep].diff() <= 0).all()
    assert len(keep) < 200


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_nms_empty_inputs(backend: str) -> None:
    boxes, scores, labels = torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    if backend == "numpy":
        boxes, scores, labels = boxes.numpy(), scores.numpy(), labels.numpy()
    for keep in (nms(boxes, scores, 0.5), batched_nms(boxes, scores, labels, 0.5)):
        assert type(keep) is type(boxes)
        assert keep.shape == (0,) and str(keep.dtype).endswith("int64")


def test_nms_rejects_mismatched_scores() -> None:
    with pytest.raises(
        ConfigError, match=r"field 'scores': scores must have shape \[2\], got \[3\]"
    ):
        nms(torch.zeros((2, 4)), torch.zeros(3), 0.5)
    with pytest.raises(ConfigError, match="field 'labels'"):
        batched_nms(torch.zeros((2, 4)), torch.zeros(2), torch.zeros(1), 0.5)


@pytest.mark.parametrize("to", [np.asarray, torch.as_tensor])
@pytest.mark.parametrize(("paired", "pairwise"), list(PAIRED.items()))
def test_paired_iou_is_the_diagonal_of_the_pairwise_iou(to, paired, pairwise):
    rng = np.random.default_rng(7)
    corners = rng.uniform(0, 50, size=(2, 20, 2, 2))
    a, b = (to(np.concatenate([c.min(1), c.max(1)], axis=1)) for c in corners)
    a[0] = b[0] = to(np.array([3.0, 3.0, 3.0, 3.0]))  # two empty boxes: 0, not NaN
    a[1] = to(np.array([4.0, 1.0, 4.0, 9.0]))  # a line
    values, matrix = paired(a, b), pairwise(a, b)
    assert type(values) is type(a) and values.shape == (20,)
    assert np.allclose(np.asarray(values), np.diagonal(np.asarray(matrix)), atol=1e-12)
    assert float(values[0]) == 0.0


def test_complete_iou_by_hand() -> None:
    # A 2x1 box and the unit square in its left half: IoU 1/2, enclosing diagonal^2 5,
    # centres 1/2 apart, aspect angles arctan 2 and arctan 1.
    a = np.array([[0.0, 0.0, 2.0, 1.0]])
    b = np.array([[0.0, 0.0, 1.0, 1.0]])
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(1)) ** 2
    expected = 0.5 - 0.25 / 5 - v / (1 - 0.5 + v) * v
    np.testing.assert_allclose(complete_box_iou(a, b), [[expected]], rtol=1e-12)
    np.testing.assert_allclose(paired_complete_box_iou(a, b), [expected], rtol=1e-12)
    np.testing.assert_allclose(complete_box_iou(a, a), [[1.0]], rtol=1e-12)


def test_paired_eps_is_added_to_the_denominators() -> None:
    # touching unit squares: union 2, enclosing area 2, diagonal^2 5, centres 1 apart
    a = np.array([[0.0, 0.0, 1.0, 1.0]])
    b = np.array([[1.0, 0.0, 2.0, 1.0]])
    np.testing.assert_allclose(paired_generalized_box_iou(a, b, eps=1.0), [0.0])
    np.testing.assert_allclose(paired_distance_box_iou(a, b, eps=1.0), [-1 / 6])
    np.testing.assert_allclose(paired_box_iou(a, a, eps=1.0), [0.5])


def test_paired_iou_refuses_unequal_counts():
    with pytest.raises(ConfigError):
        paired_box_iou(np.zeros((2, 4)), np.zeros((3, 4)))
