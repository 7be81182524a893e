"""Mosaic augmentation: four training images tiled into one, around a random centre.

A single-shot detector sees every object of a batch at once, so a sample made of four
images holds four times the objects, at the edges and corners of the frame as often as in
its middle, and with four backgrounds (Bochkovskiy et al., "YOLOv4", 2020, and every YOLO
since). :class:`Mosaic` wraps a detection dataset: with probability ``p`` a sample is
its item and three random others placed around a random centre of a ``2 imgsz`` canvas,
from which the ``imgsz`` x ``imgsz`` sample is cropped; otherwise the item passes through.

Boxes move with their pixels (and instance masks with theirs); a box cut to less than
:data:`MIN_SIDE` pixels or to less than :data:`MIN_VISIBLE` of its area is dropped with
its label and other per-box fields. All randomness comes from torch's generator, so a
``torch.manual_seed`` before a call (as the data loader's per-worker seeding does) makes
the sample reproducible.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as tvf

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
    """A detection dataset whose samples are mosaics of four of its items with probability ``p``.

    Args:
        dataset: Returns ``(image, target)``: ``tv_tensors.Image`` ``uint8`` or ``float``
            ``[3, H, W]`` and a dict with ``tv_tensors.BoundingBoxes`` ``"boxes"`` (XYXY),
            ``"labels"`` and optionally ``"masks"`` (``[N, H, W]``), ``"iscrowd"``,
            ``"area"``, ``"image_id"``; typically a
            :class:`~visionkit.data.datasets.DetectionDataset` with the training
            transforms, whose items are ``imgsz`` x ``imgsz`` already.
        imgsz: Side of a mosaic sample. An item of another size is resized so its longer
            side is ``imgsz`` before it is tiled.
        p: Probability that a sample is a mosaic; 0 passes every item through unchanged.
        scale: Range of the zoom of the crop: a zoom ``g`` crops ``imgsz / g`` pixels of
            the canvas around its centre and resizes them to ``imgsz`` (``g < 1`` shows more
            of the four images, smaller).

    Raises:
        ConfigError: ``imgsz``, ``p`` or ``scale`` out of range.

    Example:
        >>> train = Mosaic(load_dataset(path, "detect", transforms=...), 640)  # doctest: +SKIP
        >>> train.close()  # the last epochs see whole images  # doctest: +SKIP
    """

    def __init__(
        self, dataset: Any, imgsz: int, p: float = 1.0, scale: tuple[float, float] = (1.0, 1.0)
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

    def __len__(self) -> int:
        return len(self.dataset)

    def close(self) -> None:
        """Switch mosaic off (``p = 0``): from now on every item passes through unchanged."""
        self.p = 0.0

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        if self.p == 0 or torch.rand(()).item() >= self.p:
            return self.dataset[index]
        others = torch.randint(len(self.dataset), (3,)).tolist()
        return self._combine([self.dataset[i] for i in [index, *others]])

    def _combine(self, items: list[tuple[Any, dict[str, Any]]]) -> tuple[Any, dict[str, Any]]:
        """Tile four items around a random centre of the canvas and crop the sample."""
        side = self.imgsz
        centre = (side * (0.5 + torch.rand(2))).round().long().tolist()  # (x, y)
        first = items[0][0]
        fill = PAD_VALUE if not first.is_floating_point() else PAD_VALUE / 255
        canvas = torch.full((3, 2 * side, 2 * side), fill, dtype=first.dtype)
        tiles = [
            self._place(canvas, *self._fit(*item), quadrant, centre)
            for quadrant, item in enumerate(items)
        ]
        target = _concat_targets(tiles, items[0][1], canvas.shape[-2:])
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(()).item()
        crop = min(2 * side, round(side / zoom))
        corner = side - crop // 2
        image = tvf.resized_crop(tv_tensors.Image(canvas), corner, corner, crop, crop, [side, side])
        return image, _crop_target(target, corner, crop, side)

    def _fit(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The item with its longer side resized to ``imgsz`` (unchanged when it is already)."""
        if max(image.shape[-2:]) == self.imgsz:
            return image, target
        resized = tvf.resize(tv_tensors.Image(image), size=None, max_size=self.imgsz)
        height, width = resized.shape[-2:]
        target = dict(target, boxes=tvf.resize(target["boxes"], [height, width]))
        if "masks" in target:
            target["masks"] = tvf.resize(target["masks"], [height, width])
        return resized, target

    @staticmethod
    def _place(
        canvas: torch.Tensor,
        image: torch.Tensor,
        target: dict[str, Any],
        quadrant: int,
        centre: list[int],
    ) -> dict[str, Any]:
        """Paste ``image`` into ``canvas`` with a corner at ``centre`` (quadrants 0-3: top
        left, top right, bottom left, bottom right); returns the target in canvas pixels."""
        height, width = image.shape[-2:]
        left = centre[0] - width if quadrant in (0, 2) else centre[0]
        top = centre[1] - height if quadrant in (0, 1) else centre[1]
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, canvas.shape[-1]), min(top + height, canvas.shape[-2])
        canvas[:, y0:y1, x0:x1] = image[:, y0 - top : y1 - top, x0 - left : x1 - left]
        placed = dict(target)
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        placed["boxes"] = target["boxes"].as_subclass(torch.Tensor).float() + shift
        if "masks" in target:
            masks = target["masks"]
            full = masks.new_zeros((len(masks), *canvas.shape[-2:]))
            full[:, y0:y1, x0:x1] = masks[:, y0 - top : y1 - top, x0 - left : x1 - left]
            placed["masks"] = full
        return placed


def _concat_targets(
    tiles: list[dict[str, Any]], main: dict[str, Any], size: torch.Size
) -> dict[str, Any]:
    """One target of the four tiles' boxes (canvas pixels), per-box fields and masks; other
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


def _crop_target(target: dict[str, Any], corner: int, crop: int, side: int) -> dict[str, Any]:
    """The target of the ``crop`` x ``crop`` canvas window at ``(corner, corner)`` resized to
    ``side``, without the boxes the window cuts too much (see the module docs)."""
    factor = side / crop
    before = box_area(target["boxes"].as_subclass(torch.Tensor)) * factor**2
    boxes = tvf.resized_crop(target["boxes"], corner, corner, crop, crop, [side, side])
    plain = boxes.as_subclass(torch.Tensor)
    sides = plain[:, 2:] - plain[:, :2]
    keep = (sides >= MIN_SIDE).all(dim=1) & (box_area(plain) >= MIN_VISIBLE * before)
    cropped = dict(target, boxes=tv_tensors.wrap(boxes[keep], like=boxes))
    for key in PER_BOX_KEYS:
        if key in target:
            cropped[key] = target[key][keep]
    if "masks" in target:
        masks = tvf.resized_crop(target["masks"], corner, corner, crop, crop, [side, side])
        cropped["masks"] = tv_tensors.wrap(masks[keep], like=masks)
    return cropped
