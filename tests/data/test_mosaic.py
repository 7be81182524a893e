"""Mosaic: boxes and semantic masks stay on their pixels, cut boxes go with their fields,
seeds repeat samples."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from visionkit.data.mosaic import MIN_SIDE, MIN_VISIBLE, Mosaic
from visionkit.data.records import IGNORE_INDEX
from visionkit.data.transforms import PAD_VALUE
from visionkit.errors import ConfigError

COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)
"""The fill colour of each class's boxes; the background is black."""


class PaintedBoxes(Dataset):
    """Black images with non-overlapping boxes filled with their class's colour.

    Items are ``side`` x ``side`` (or ``height`` x ``side``), ``uint8`` or ``float``, with
    per-box ``labels``, ``iscrowd``, ``area`` and, optionally, instance ``masks``.
    """

    def __init__(
        self,
        length: int = 6,
        side: int = 64,
        height: int | None = None,
        floating: bool = False,
        masks: bool = False,
    ) -> None:
        self.length, self.side, self.height = length, side, height or side
        self.floating, self.masks = floating, masks

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        image = torch.zeros(3, self.height, self.side, dtype=torch.uint8)
        generator = torch.Generator().manual_seed(index)
        boxes, labels = [], []
        for row in range(0, self.height - 15, 16):  # one box per 16-pixel band
            x0 = int(torch.randint(0, self.side - 14, (1,), generator=generator))
            width = int(torch.randint(3, 14, (1,), generator=generator))
            label = (index + row // 16) % len(COLOURS)
            image[:, row + 2 : row + 14, x0 : x0 + width] = COLOURS[label][:, None, None]
            boxes.append([x0, row + 2, x0 + width, row + 14])
            labels.append(label)
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor(boxes, dtype=torch.float32),
                format="XYXY",
                canvas_size=(self.height, self.side),
            ),
            "labels": torch.tensor(labels),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
            "area": torch.tensor([float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]),
            "image_id": index,
        }
        if self.masks:
            target["masks"] = tv_tensors.Mask((image.sum(0) > 0)[None].repeat(len(boxes), 1, 1))
            for mask, box in zip(target["masks"], boxes, strict=True):  # each its own box
                keep = torch.zeros_like(mask)
                keep[box[1] : box[3], box[0] : box[2]] = 1
                mask &= keep
        pixels = image.float() / 255 if self.floating else image
        return tv_tensors.Image(pixels), target


class PaintedClasses(Dataset):
    """:class:`PaintedBoxes` as semantic samples: a ``tv_tensors.Mask`` of class indices,
    1 + the box's class where it is painted, 0 (background) elsewhere."""

    def __init__(self, **kwargs: Any) -> None:
        self.boxes = PaintedBoxes(**kwargs)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int) -> tuple[Any, tv_tensors.Mask]:
        image, target = self.boxes[index]
        mask = torch.zeros(image.shape[-2:], dtype=torch.int64)
        for box, label in zip(target["boxes"].int().tolist(), target["labels"], strict=True):
            mask[box[1] : box[3], box[0] : box[2]] = label + 1
        return image, tv_tensors.Mask(mask)


class Uniform(Dataset):
    """64 x 64 float images of one class colour each (item ``i`` is class ``i % 3``),
    with the mask ``1 + class`` everywhere."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[Any, tv_tensors.Mask]:
        label = index % len(COLOURS)
        image = COLOURS[label][:, None, None].expand(3, 64, 64).float() / 255
        return tv_tensors.Image(image), tv_tensors.Mask(torch.full((64, 64), label + 1))


def _colour_at(image: torch.Tensor) -> torch.Tensor:
    """``int64`` ``[H, W]``: the class whose colour each pixel has, -1 for the rest."""
    pixels = image if image.dtype == torch.uint8 else (image * 255).round().to(torch.uint8)
    found = torch.full(pixels.shape[-2:], -1)
    for label, colour in enumerate(COLOURS):
        found[(pixels == colour[:, None, None]).all(0)] = label
    return found


def test_boxes_cover_exactly_the_pixels_of_their_colour() -> None:
    mosaic = Mosaic(PaintedBoxes(), 64, p=1.0)
    for seed in range(8):
        torch.manual_seed(seed)
        image, target = mosaic[seed % 6]
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
        colour = _colour_at(image)
        covered = torch.zeros_like(colour, dtype=torch.bool)
        for box, label in zip(
            target["boxes"].int().tolist(), target["labels"].tolist(), strict=True
        ):
            inside = colour[box[1] : box[3], box[0] : box[2]]
            assert (inside == label).all()  # the whole box is its object: moved exactly
            covered[box[1] : box[3], box[0] : box[2]] = True
        # pixels of an object outside every box come from dropped slivers only
        assert (colour[~covered] >= 0).sum() <= 0.2 * (colour >= 0).sum() + 12 * MIN_SIDE


def test_dropped_boxes_take_their_fields_and_masks_with_them() -> None:
    mosaic = Mosaic(PaintedBoxes(masks=True), 64, p=1.0)
    for seed in range(16):
        torch.manual_seed(seed)
        _, target = mosaic[0]
        count = len(target["boxes"])
        assert [len(target[k]) for k in ("labels", "iscrowd", "area", "masks")] == [count] * 4
        sides = target["boxes"][:, 2:] - target["boxes"][:, :2]
        assert (sides >= MIN_SIDE).all()
        # no zoom: each kept box shows at least MIN_VISIBLE of its object ("area" moved along)
        assert (sides.prod(dim=1) >= MIN_VISIBLE * target["area"]).all()
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
        assert target["boxes"].canvas_size == (64, 64) and target["masks"].shape[-2:] == (64, 64)
        for mask, box in zip(target["masks"], target["boxes"].int().tolist(), strict=True):
            rows, cols = mask.nonzero(as_tuple=True)
            assert [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1] == box


def test_zoomed_crops_keep_boxes_on_their_colour_and_float_images_stay_float() -> None:
    mosaic = Mosaic(PaintedBoxes(floating=True), 64, p=1.0, scale=(0.5, 0.5))
    torch.manual_seed(0)
    image, target = mosaic[1]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    # the whole 128-pixel canvas shrunk to 64: each box's centre pixel keeps its colour
    for box, label in zip(target["boxes"], target["labels"], strict=True):
        x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert image[:, y, x].argmax() == label
    assert target["boxes"].min() >= 0 and target["boxes"].max() <= 64


def test_items_of_another_size_are_fitted_before_tiling() -> None:
    mosaic = Mosaic(PaintedBoxes(side=128, height=96), 64, p=1.0)
    torch.manual_seed(0)
    image, target = mosaic[0]
    assert image.shape == (3, 64, 64) and len(target["boxes"]) > 0
    assert target["boxes"].max() <= 64


def test_a_seed_repeats_the_sample_and_another_seed_changes_it() -> None:
    mosaic = Mosaic(PaintedBoxes(), 64, p=0.5, scale=(0.6, 1.0))
    samples = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        samples.append([mosaic[i] for i in range(4)])
    for (image_a, target_a), (image_b, target_b) in zip(samples[0], samples[1], strict=True):
        assert torch.equal(image_a, image_b)
        assert torch.equal(target_a["boxes"], target_b["boxes"])
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(samples[0], samples[2], strict=True))


def test_p_zero_and_close_pass_items_through() -> None:
    dataset = PaintedBoxes()
    mosaic = Mosaic(dataset, 64, p=0.0)
    image, target = mosaic[2]
    assert torch.equal(image, dataset[2][0]) and torch.equal(
        target["boxes"], dataset[2][1]["boxes"]
    )
    assert len(mosaic) == len(dataset)
    mosaic = Mosaic(dataset, 64, p=1.0)
    mosaic.close()
    assert mosaic.p == 0 and torch.equal(mosaic[2][0], dataset[2][0])


def test_semantic_masks_move_with_their_pixels_and_the_uncovered_canvas_is_ignored() -> None:
    mosaic = Mosaic(PaintedClasses(height=40), 64, p=1.0)  # wide items leave gaps
    uncovered = 0
    for seed in range(8):
        torch.manual_seed(seed)
        image, mask = mosaic[seed % 6]
        assert isinstance(mask, tv_tensors.Mask) and mask.shape == (64, 64)
        colour = _colour_at(image)
        painted = colour >= 0
        assert torch.equal(mask[painted], colour[painted] + 1)  # every class on its colour
        blank = (image == 0).all(0)
        assert (mask[blank] == 0).all()  # the items' background stays background
        gap = (image == PAD_VALUE).all(0)
        assert (mask[gap] == IGNORE_INDEX).all() and (painted | blank | gap).all()
        uncovered += int(gap.sum())
    assert uncovered > 0


def test_zoomed_out_semantic_mosaic_is_four_whole_images_at_half_size() -> None:
    mosaic = Mosaic(Uniform(), 64, p=1.0, scale=(0.5, 0.5))
    for seed in range(6):
        torch.manual_seed(seed)
        image, mask = mosaic[seed]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        for rows in (slice(0, 32), slice(32, 64)):
            for cols in (slice(0, 32), slice(32, 64)):  # one whole image in each quadrant
                label = int(mask[rows, cols][0, 0])
                assert label != IGNORE_INDEX and (mask[rows, cols] == label).all()
                colour = COLOURS[label - 1].float()[:, None, None].expand(3, 32, 32) / 255
                torch.testing.assert_close(image[:, rows, cols], colour, atol=1e-3, rtol=0)
        assert int(mask[0, 0]) == seed % 3 + 1  # the item asked for is the top left one


def test_transforms_run_once_on_every_sample_after_tiling() -> None:
    calls = []  # the image of every call

    def to_float(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(image)
        return image.float() / 255, mask

    items = PaintedClasses()
    for p in (1.0, 0.0):
        calls.clear()
        torch.manual_seed(0)
        image, mask = Mosaic(items, 64, p=p, scale=(0.5, 0.5), transforms=to_float)[2]
        assert len(calls) == 1 and calls[0].dtype == torch.uint8 and image.dtype == torch.float32
        assert torch.equal(image, calls[0].float() / 255) and mask.shape == (64, 64)
    assert torch.equal(calls[0], items[2][0])  # p=0 passes the item itself


def test_the_fill_value_paints_the_uncovered_canvas() -> None:
    mosaic = Mosaic(PaintedClasses(height=40, floating=True), 64, p=1.0, fill=-1.0)
    uncovered = 0
    for seed in range(8):
        torch.manual_seed(seed)
        image, mask = mosaic[0]
        gap = mask == IGNORE_INDEX
        assert (image[:, gap] == -1.0).all() and (image[:, ~gap] >= 0).all()
        uncovered += int(gap.sum())
    assert uncovered > 0


@pytest.mark.parametrize(
    "kwargs", [{"imgsz": 0}, {"p": 1.5}, {"scale": (0.2, 1.0)}, {"scale": (1.2, 1.0)}]
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Mosaic(PaintedBoxes(), **{"imgsz": 64, **kwargs})
