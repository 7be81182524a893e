"""Tests for visionkit.data.transforms: boxes and masks stay in step with the pixels."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from visionkit.data.records import IGNORE_INDEX
from visionkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAD_VALUE,
    PadBottomRight,
    classification_transforms,
    detection_transforms,
    normalised_float,
    segmentation_transforms,
)

HEIGHT, WIDTH = 60, 80
RECTANGLES = [(5, 10, 25, 30), (40, 5, 75, 20), (30, 35, 50, 58)]  # xyxy pixel edges
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def _scene() -> tuple[tv_tensors.Image, dict]:
    """Grey image with three coloured rectangles, their boxes, labels and instance masks."""
    image = torch.full((3, HEIGHT, WIDTH), 60, dtype=torch.uint8)
    masks = torch.zeros((len(RECTANGLES), HEIGHT, WIDTH), dtype=torch.uint8)
    for i, ((x1, y1, x2, y2), colour) in enumerate(zip(RECTANGLES, COLOURS, strict=True)):
        image[:, y1:y2, x1:x2] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
        masks[i, y1:y2, x1:x2] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(RECTANGLES, dtype=torch.float32),
            format="XYXY",
            canvas_size=(HEIGHT, WIDTH),
        ),
        "labels": torch.tensor([0, 1, 2]),
        "masks": tv_tensors.Mask(masks),
        "image_id": 7,
        "iscrowd": torch.tensor([0, 1, 0]),
    }
    return tv_tensors.Image(image), target


def _tight_box(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _assert_boxes_fit_masks(target: dict) -> None:
    boxes, masks = target["boxes"], target["masks"]
    assert len(boxes) == len(masks) == len(target["labels"]) == len(target["iscrowd"])
    for box, mask in zip(boxes, masks, strict=True):
        assert mask.any()
        assert torch.allclose(box, _tight_box(mask), atol=1.0), (box, _tight_box(mask))


def test_train_detection_keeps_boxes_on_their_masks() -> None:
    image, target = _scene()
    pipeline = detection_transforms(train=True, imgsz=64)
    first_box_sides = set()
    for seed in range(16):
        torch.manual_seed(seed)
        out_image, out = pipeline(image, target)
        assert out_image.shape == (3, 64, 64) and out_image.dtype == torch.float32
        assert out["masks"].shape[-2:] == (64, 64) and out["masks"].dtype == torch.uint8
        assert out["image_id"] == 7
        _assert_boxes_fit_masks(out)
        if 0 in out["labels"].tolist():
            box = out["boxes"][out["labels"].tolist().index(0)]
            first_box_sides.add(bool(box[0] + box[2] < out["boxes"].canvas_size[1]))
    assert first_box_sides == {True, False}  # the flip happened in some samples, not all


def test_eval_detection_resizes_longer_side_and_pads_bottom_right() -> None:
    image, target = _scene()
    out_image, out = detection_transforms(train=False, imgsz=40)(image, target)
    assert out_image.shape == (3, 40, 40)
    scale = 40 / WIDTH
    expected = torch.tensor(RECTANGLES, dtype=torch.float32) * scale
    assert torch.allclose(out["boxes"], expected)
    _assert_boxes_fit_masks(out)
    assert torch.allclose(out_image[:, 30:, :], torch.tensor(PAD_VALUE / 255))
    assert not out["masks"][:, 30:, :].any()
    assert out_image[:, :30, :].min() >= 0 and out_image.max() <= 1


def test_eval_detection_is_deterministic() -> None:
    image, target = _scene()
    pipeline = detection_transforms(train=False, imgsz=48)
    first, second = pipeline(image, target), pipeline(image, target)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1]["boxes"], second[1]["boxes"])


def test_sanitize_drops_degenerate_boxes_with_labels_masks_and_crowd_flags() -> None:
    image, target = _scene()
    boxes = target["boxes"].clone()
    boxes[1] = torch.tensor([40.0, 5.0, 40.0, 20.0])  # zero width
    target["boxes"] = tv_tensors.wrap(boxes, like=target["boxes"])
    _, out = detection_transforms(train=False, imgsz=80)(image, target)
    assert out["labels"].tolist() == [0, 2]
    assert out["iscrowd"].tolist() == [0, 0]
    assert len(out["masks"]) == 2 and len(out["boxes"]) == 2
    _assert_boxes_fit_masks(out)


def test_detection_handles_an_image_without_objects() -> None:
    image, _ = _scene()
    empty = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.zeros((0, 4)), format="XYXY", canvas_size=(HEIGHT, WIDTH)
        ),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": tv_tensors.Mask(torch.zeros((0, HEIGHT, WIDTH), dtype=torch.uint8)),
        "image_id": 1,
        "iscrowd": torch.zeros(0, dtype=torch.int64),
    }
    for train in (True, False):
        out_image, out = detection_transforms(train, 32)(image, empty)
        assert out_image.shape == (3, 32, 32) and out["boxes"].shape == (0, 4)
        assert out["masks"].shape == (0, 32, 32)


def _semantic_scene() -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    image, target = _scene()
    classes = torch.zeros((HEIGHT, WIDTH), dtype=torch.int64)
    for index, mask in enumerate(target["masks"], start=1):
        classes[mask.bool()] = index
    return image, tv_tensors.Mask(classes)


@pytest.mark.parametrize("train", [True, False])
def test_segmentation_mask_stays_on_its_colours(train: bool) -> None:
    image, mask = _semantic_scene()
    pipeline = segmentation_transforms(train, imgsz=64)
    mean = torch.tensor(IMAGENET_MEAN)[:, None]
    std = torch.tensor(IMAGENET_STD)[:, None]
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_mask = pipeline(image, mask)
        assert out_image.shape == (3, 64, 64) and out_image.dtype == torch.float32
        assert out_mask.shape == (64, 64) and out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3, IGNORE_INDEX}
        rgb = out_image.reshape(3, -1) * std + mean  # back to 0-1
        for index in (1, 2, 3):
            pixels = rgb[:, out_mask.reshape(-1) == index]
            if pixels.shape[1]:
                # the rectangle's own channel dominates, despite colour jitter
                assert (pixels.argmax(dim=0) == index - 1).float().mean() > 0.9


def test_segmentation_padding_is_ignored() -> None:
    image, mask = _semantic_scene()
    _, out_mask = segmentation_transforms(train=False, imgsz=80)(image, mask)
    assert (out_mask[60:] == IGNORE_INDEX).all()
    assert (out_mask[:60] != IGNORE_INDEX).all()


def test_segmentation_training_augmentation_can_be_turned_off_one_option_at_a_time() -> None:
    image, mask = _semantic_scene()
    side = HEIGHT  # a square scene of the output size: nothing to resize, crop or pad
    image, mask = tv_tensors.Image(image[:, :, :side]), tv_tensors.Mask(mask[:, :side])
    expected_image, expected_mask = segmentation_transforms(False, side)(image, mask)
    still = segmentation_transforms(True, side, flip=0.0, scale=(1.0, 1.0), colour=False)
    mirror = segmentation_transforms(True, side, flip=1.0, scale=(1.0, 1.0), colour=False)
    jittered = segmentation_transforms(True, side, flip=0.0)
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_mask = still(image, mask)
        assert torch.equal(out_image, expected_image) and torch.equal(out_mask, expected_mask)
        out_image, out_mask = mirror(image, mask)
        assert torch.equal(out_image, expected_image.flip(-1))
        assert torch.equal(out_mask, expected_mask.flip(-1))
        changed += not torch.equal(jittered(image, mask)[1], expected_mask)
    assert changed >= 2  # the default scale jitter moves the mask


def test_segmentation_without_normalisation_leaves_uint8_for_normalised_float() -> None:
    image, mask = _semantic_scene()
    for train in (True, False):
        torch.manual_seed(0)
        expected = segmentation_transforms(train, imgsz=64)(image, mask)
        torch.manual_seed(0)
        pixels, out_mask = segmentation_transforms(train, imgsz=64, normalise=False)(image, mask)
        assert pixels.dtype == torch.uint8 and isinstance(pixels, tv_tensors.Image)
        normalised, same_mask = normalised_float()(pixels, out_mask)
        assert torch.equal(normalised, expected[0]) and torch.equal(same_mask, expected[1])


def test_pad_bottom_right_leaves_large_inputs_alone() -> None:
    image = tv_tensors.Image(torch.zeros((3, 10, 12), dtype=torch.uint8))
    assert PadBottomRight(8)(image).shape == (3, 10, 12)
    assert PadBottomRight(11)(image).shape == (3, 11, 12)


def test_classification_output_shape_and_normalisation() -> None:
    image = tv_tensors.Image(torch.full((3, 50, 70), 255, dtype=torch.uint8))
    for train in (True, False):
        torch.manual_seed(0)
        out = classification_transforms(train, imgsz=32)(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, 16, 16], expected, atol=1e-5)


def test_classification_eval_crops_the_centre() -> None:
    image = torch.zeros((3, 64, 64), dtype=torch.uint8)
    image[:, 4:60, 4:60] = 255  # a white square with a black border of 4 px
    out = classification_transforms(train=False, imgsz=56)(tv_tensors.Image(image))
    # 64 px resized to 56 / 0.875 = 64, centre 56 px cut: only white remains
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, white[:, None, None].expand_as(out), atol=1e-5)


def test_classification_training_can_keep_orientation_and_whole_image() -> None:
    # a left-white, right-black image: with flip=0 and the whole image kept, it never mirrors
    image = torch.zeros((3, 32, 32), dtype=torch.uint8)
    image[:, :, :16] = 255
    pipeline = classification_transforms(
        True, imgsz=32, flip=0.0, crop_scale=(1.0, 1.0), colour=False, mean=(0, 0, 0), std=(1, 1, 1)
    )
    for seed in range(10):
        torch.manual_seed(seed)
        out = pipeline(tv_tensors.Image(image))
        assert out[:, :, 0].min() > 0.9 and out[:, :, -1].max() < 0.1


def test_classification_normalises_with_the_given_statistics() -> None:
    image = tv_tensors.Image(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    out = classification_transforms(False, imgsz=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))(
        image
    )
    assert torch.allclose(out[:, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
