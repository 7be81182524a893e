"""Mosaic augmentation: four training images tiled into one, around a random centre.

A single-shot detector sees every object of a batch at once, so a sample made of four
images holds four times the objects, at the edges and corners of the frame as often as in
its middle, and with four backgrounds (Bochkovskiy et al., "YOLOv4", 2020, and every YOLO
since). :class:`Mosaic` wraps a detection or a semantic segmentation dataset: with
probability ``p`` a sample is its item and three random others placed around a random
centre of a ``2 imgsz`` canvas, from which the ``imgsz`` x ``imgsz`` sample is cropped;
otherwise the item passes through. The centre is drawn where four square items cover
the whole sample, so only items of another shape leave canvas uncovered.

Boxes move with their pixels (and instance masks with theirs); a box cut to less than
:data:`MIN_SIDE` pixels or to less than :data:`MIN_VISIBLE` of its area is dropped with
its label and other per-box fields. A semantic mask moves with its pixels too, and the
canvas that no image covers is :data:`~visionkit.data.records.IGNORE_INDEX`. All
randomness comes from torch's generator, so a ``torch.manual_seed`` before a call (as the
data loader's per-worker seeding does) makes the sample reproducible.

Zoomed out to ``scale=(0.5, 0.5)``, a mosaic is the whole canvas: four images at half
their size, so a training step of the same tensor shape sees four times the images. For a
segmenter trained from scratch this is progressive resizing (Howard's fast.ai courses;
Tan and Le, "EfficientNetV2", ICML 2021) without a second input size: the first epochs
learn shapes and textures from many small images, the last ones (after
:meth:`Mosaic.close`) the real scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as tvf

from visionkit.data.records import IGNORE_INDEX
from visionkit.data.transforms import PAD_VALUE
from visionkit.errors import ConfigError
from visionkit.ops.boxes import box_area

__all__ = ["MIN_SIDE", "MIN_VISIBLE", "PER_BOX_KEYS", "Mosaic"]

MIN_SIDE = 2.0
"""Boxes narrower or lower than this many output pixels after the crop are dropped."""

MIN_VISIBLE = 0.2
"""Boxes keeping less than this fraction of their area after the crop are dropped: a
sliver of an object would teach the model to find objects where there is barely one."""

PER_BOX_KEYS = ("labels", "iscrowd", "area")
"""Target fields with one entry per box, kept or dropped with their boxes."""


class Mosaic(Dataset):
    """A dataset whose samples are mosaics of four of its items with probability ``p``.

    Args:
        dataset: Returns ``(image, target)``: a ``tv_tensors.Image`` ``uint8`` or
            ``float`` ``[3, H, W]``, and either a dict with ``tv_tensors.BoundingBoxes``
            ``"boxes"`` (XYXY), ``"labels"`` and optionally ``"masks"`` (``[N, H, W]``),
            ``"iscrowd"``, ``"area"``, ``"image_id"`` (detection), or a
            ``tv_tensors.Mask`` ``[H, W]`` of class indices (semantic segmentation);
            typically a :class:`~visionkit.data.datasets.DetectionDataset` or
            :class:`~visionkit.data.datasets.SegmentationDataset` with the training
            transforms, whose items are ``imgsz`` x ``imgsz`` already.
        imgsz: Side of a mosaic sample, and of an item on the canvas: an item of another
            size is resized so that its longer side is ``imgsz`` there.
        p: Probability that a sample is a mosaic; 0 passes every item through unchanged.
        scale: Range of the zoom of the crop: a zoom ``g`` crops ``imgsz / g`` pixels of
            the canvas around its centre and resizes them to ``imgsz`` (``g < 1`` shows more
            of the four images, smaller; 0.5 shows the whole canvas).
        fill: The canvas's value where no image lands; ``None`` is :data:`PAD_VALUE` on
            the items' scale (0-255 or 0-1). Items normalised to zero mean want 0.
        transforms: Applied to every sample, tiled or passed through, after tiling: the
            steps that touch every pixel (conversion to float, normalisation) then run
            once a sample instead of once an item, and the items are tiled as ``uint8``.

    Raises:
        ConfigError: ``imgsz``, ``p`` or ``scale`` out of range.

    Example:
        >>> train = Mosaic(load_dataset(path, "detect", transforms=...), 640)  # doctest: +SKIP
        >>> train.close()  # the last epochs see whole images  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Any,
        imgsz: int,
        p: float = 1.0,
        scale: tuple[float, float] = (1.0, 1.0),
        fill: float | None = None,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> None:
        if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 1:
            raise ConfigError(f"must be a positive int, got {imgsz!r}", field="imgsz")
        if not 0 <= p <= 1:
            raise ConfigError(f"must be in [0, 1], got {p!r}", field="p")
        if not 0.5 <= scale[0] <= scale[1]:
            raise ConfigError(
                f"must be a range (low, high) with low >= 0.5, got {scale!r}", field="scale"
            )
        self.dataset = dataset
        self.imgsz = imgsz
        self.p = float(p)
        self.scale = (float(scale[0]), float(scale[1]))
        self.fill = fill
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def close(self) -> None:
        """Switch mosaic off (``p = 0``): from now on every item passes through unchanged."""
        self.p = 0.0

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if self.p == 0 or torch.rand(()).item() >= self.p:
            sample = self.dataset[index]
        else:
            others = torch.randint(len(self.dataset), (3,)).tolist()
            sample = self._combine([self.dataset[i] for i in [index, *others]])
        return sample if self.transforms is None else self.transforms(*sample)

    def _combine(self, items: list[tuple[Any, Any]]) -> tuple[Any, Any]:
        """Tile four items around a random centre of the canvas and crop the sample.

        The canvas is drawn on the sample's scale: a zoom ``g`` crops ``imgsz / g`` canvas
        pixels, so each item is resized to ``tile = imgsz * g`` (about) before it is
        pasted, and only the ``imgsz`` x ``imgsz`` sample is ever made. That resizes four
        small images instead of the whole canvas, and none at zoom 1.
        """
        side = self.imgsz
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(()).item()
        crop = min(2 * side, round(side / zoom))  # the canvas pixels that the sample shows
        tile = round(side * side / crop)  # an item's longer side on the sample's scale
        # the corner that the four images share, in sample pixels (x, y): anywhere from
        # where square images of side ``tile`` still cover the sample
        centre = (side - tile + (2 * tile - side) * torch.rand(2)).round().long().tolist()
        first, main = items[0]
        fill = self.fill
        if fill is None:
            fill = PAD_VALUE / 255 if first.is_floating_point() else PAD_VALUE
        image = torch.full((3, side, side), fill, dtype=first.dtype)
        semantic = isinstance(main, tv_tensors.Mask)
        if semantic:
            classes = torch.full((side, side), IGNORE_INDEX, dtype=main.dtype)
        tiles = []
        for quadrant, item in enumerate(items):
            pixels, target = self._fit(*item, tile)
            left, top = _corner(pixels.shape[-2:], quadrant, centre)
            _paste(image, pixels, left, top)
            if semantic:
                _paste(classes, target, left, top)
            else:
                tiles.append(_shifted(target, left, top, image.shape[-2:]))
        if semantic:
            return tv_tensors.Image(image), tv_tensors.Mask(classes)
        target = _concat_targets(tiles, main, image.shape[-2:])
        return tv_tensors.Image(image), _without_cut_boxes(target, side)

    @staticmethod
    def _fit(image: torch.Tensor, target: Any, tile: int) -> tuple[Any, Any]:
        """The item with its longer side resized to ``tile`` (unchanged when it is already);
        boxes and masks (nearest class for nearest pixel) follow."""
        if max(image.shape[-2:]) == tile:
            return image, target
        resized = tvf.resize(tv_tensors.Image(image), size=None, max_size=tile)
        height, width = resized.shape[-2:]
        if isinstance(target, tv_tensors.Mask):
            return resized, tvf.resize(target, [height, width])
        target = dict(target, boxes=tvf.resize(target["boxes"], [height, width]))
        if "masks" in target:
            target["masks"] = tvf.resize(target["masks"], [height, width])
        return resized, target


def _corner(size: torch.Size, quadrant: int, centre: list[int]) -> tuple[int, int]:
    """Top-left corner ``(left, top)`` of an image of ``size`` that has a corner at
    ``centre`` (quadrants 0-3: top left, top right, bottom left, bottom right)."""
    height, width = size
    left = centre[0] - width if quadrant in (0, 2) else centre[0]
    top = centre[1] - height if quadrant in (0, 1) else centre[1]
    return left, top


def _paste(canvas: torch.Tensor, image: torch.Tensor, left: int, top: int) -> None:
    """Paste ``image`` (``[..., h, w]``) into ``canvas`` at ``(left, top)``, cut at the
    canvas's edges."""
    height, width = image.shape[-2:]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, canvas.shape[-1]), min(top + height, canvas.shape[-2])
    canvas[..., y0:y1, x0:x1] = image[..., y0 - top : y1 - top, x0 - left : x1 - left]


def _shifted(target: dict[str, Any], left: int, top: int, size: torch.Size) -> dict[str, Any]:
    """A detection target whose image was pasted at ``(left, top)`` of a sample of ``size``:
    boxes shifted, instance masks pasted into empty masks of the sample's size."""
    placed = dict(target)
    shift = torch.tensor([left, top, left, top], dtype=torch.float32)
    placed["boxes"] = target["boxes"].as_subclass(torch.Tensor).float() + shift
    if "masks" in target:
        masks = target["masks"]
        full = masks.new_zeros((len(masks), *size))
        _paste(full, masks, left, top)
        placed["masks"] = full
    return placed


def _concat_targets(
    tiles: list[dict[str, Any]], main: dict[str, Any], size: torch.Size
) -> dict[str, Any]:
    """One target of the four tiles' boxes (sample pixels), per-box fields and masks; other
    fields (``image_id``...) are the main item's."""
    target = dict(main)
    boxes = torch.cat([t["boxes"] for t in tiles])
    target["boxes"] = tv_tensors.BoundingBoxes(
        boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(size)
    )
    for key in PER_BOX_KEYS:
        if key in main:
            target[key] = torch.cat([torch.as_tensor(t[key]) for t in tiles])
    if "masks" in main:
        target["masks"] = tv_tensors.Mask(torch.cat([t["masks"] for t in tiles]))
    return target


def _without_cut_boxes(target: dict[str, Any], side: int) -> dict[str, Any]:
    """The target with its boxes clipped to the ``side`` x ``side`` sample and without the
    boxes it cuts too much (see the module docs)."""
    boxes = target["boxes"]
    before = box_area(boxes.as_subclass(torch.Tensor))
    clipped = boxes.as_subclass(torch.Tensor).clamp(0, side)
    sides = clipped[:, 2:] - clipped[:, :2]
    keep = (sides >= MIN_SIDE).all(dim=1) & (box_area(clipped) >= MIN_VISIBLE * before)
    kept = dict(target, boxes=tv_tensors.wrap(clipped[keep], like=boxes))
    for key in PER_BOX_KEYS:
        if key in target:
            kept[key] = target[key][keep]
    if "masks" in target:
        kept["masks"] = tv_tensors.wrap(target["masks"][keep], like=target["masks"])
    return kept
