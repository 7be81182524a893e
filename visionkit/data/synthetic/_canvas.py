"""Painting sprites back to front and deriving every label from who is on top.

A :class:`Canvas` keeps, beside the image, an *owner* map: for each pixel the index of the
topmost sprite painted there (-1 for background). Visible masks, tight boxes, the semantic
map and optical flow are all read off that one map, so they agree with each other and with
the image by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionkit.data.synthetic._shapes import Sprite
from visionkit.errors import ConfigError


def generator_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random source of one sample: a pure function of ``(seed, index, stream)``.

    Seeding with the tuple (not ``seed + index``) keeps samples independent of each other
    and of the order they are made in; ``stream`` separates the generators, so sample 3 of
    ``shapes`` and of ``shapes-video`` share nothing.
    """
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be >= 0, got {seed} and {index}", field="seed")
    return np.random.default_rng([seed, index, stream])


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight ``xyxy`` boxes of masks with the pixel-edge convention of COCO's ``toBbox``.

    Args:
        masks: bool ``[N, H, W]``, none of them empty.

    Returns:
        float32 ``[N, 4]``: a mask covering columns 3..7 has ``x1 = 3`` and ``x2 = 8``.
    """
    _, h, w = masks.shape
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    y1, y2 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    x1, x2 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Scene:
    """One labelled image.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        boxes: float32 ``[N, 4]`` ``xyxy`` absolute pixels: the tight box of each visible mask.
        labels: int64 ``[N]`` category ids (see ``CATEGORIES``).
        masks: bool ``[N, H, W]``: the visible (not occluded) pixels of each object, never empty.
        semantic: uint8 ``[H, W]``: the category id of the topmost object, 0 for background.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray


class Canvas:
    """An image that sprites are painted on, bottom first, remembering which one is on top.

    Args:
        background: uint8 ``[H, W, 3]``; copied, never written to.
    """

    def __init__(self, background: np.ndarray) -> None:
        self.image = background.copy()
        self.owner = np.full(background.shape[:2], -1, dtype=np.int16)
        self.labels: list[int] = []
        self.areas = np.zeros(0, dtype=np.int64)
        self.visible = np.zeros(0, dtype=np.int64)  # pixels of each sprite still on top

    def _hidden_by(self, mask: np.ndarray, x: int, y: int) -> np.ndarray:
        """int64 ``[N]``: pixels of each painted sprite that ``mask`` at ``(x, y)`` would cover."""
        h, w = mask.shape
        below = self.owner[y : y + h, x : x + w][mask] + 1
        return np.bincount(below, minlength=len(self.labels) + 1)[1:]

    def keeps_visible(self, mask: np.ndarray, x: int, y: int, fraction: float) -> bool:
        """Whether painting ``mask`` at ``(x, y)`` leaves each sprite ``fraction`` of its pixels.

        Args:
            mask: bool ``[h, w]``, placed with its top-left corner at column ``x``, row ``y``.
            x: Left column.
            y: Top row.
            fraction: Smallest visible share allowed (0-1).
        """
        left = self.visible - self._hidden_by(mask, x, y)
        return bool(np.all(left >= fraction * self.areas))

    def paint(self, sprite: Sprite, x: int, y: int) -> None:
        """Paint ``sprite`` on top of everything so far, top-left corner at ``(x, y)``."""
        h, w = sprite.mask.shape
        area = np.count_nonzero(sprite.mask)
        self.visible = np.append(self.visible - self._hidden_by(sprite.mask, x, y), area)
        self.areas = np.append(self.areas, area)
        np.copyto(self.image[y : y + h, x : x + w], sprite.pixels, where=sprite.mask[..., None])
        self.owner[y : y + h, x : x + w][sprite.mask] = len(self.labels)
        self.labels.append(sprite.category_id)

    def on_top(self) -> np.ndarray:
        """int64 ``[N]``: indices (paint order) of the sprites with at least one visible pixel."""
        return np.flatnonzero(self.visible)

    def scene(self) -> Scene:
        """A copy of the image with the labels of what is visible now.

        Sprites hidden completely are left out, so no mask is empty.
        """
        kept = self.on_top()
        masks = self.owner[None] == kept[:, None, None].astype(self.owner.dtype)
        labels = np.asarray(self.labels, dtype=np.int64)
        return Scene(self.image.copy(), tight_boxes(masks), labels[kept], masks, self.semantic())

    def semantic(self) -> np.ndarray:
        """uint8 ``[H, W]``: the category id of the topmost sprite, 0 for background."""
        return self.lookup(np.asarray(self.labels, dtype=np.uint8), background=0)

    def lookup(self, values: np.ndarray, background: float | np.ndarray) -> np.ndarray:
        """Map every pixel to a per-sprite value.

        Args:
            values: ``[N, ...]``: one value (or vector) per painted sprite.
            background: The value for pixels no sprite covers.

        Returns:
            ``[H, W, ...]`` of ``values``' dtype.
        """
        table = np.concatenate([np.broadcast_to(background, (1, *values.shape[1:])), values])
        return table.astype(values.dtype)[self.owner + 1]
