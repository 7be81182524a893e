"""Shape classes, their geometry, and rasterisation into textured sprites.

Every class is a polygon scaled to unit area, so an object's *size* is the square root of
its area in pixels whatever its class: a size drawn between 32 and 96 px gives a COCO
"medium" object for a circle and a star alike. Rasterisation is PIL's ``ImageDraw.polygon``
without anti-aliasing, so a mask is exactly the set of pixels painted and the labels derived
from it (boxes, semantic maps, flow) are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from visionkit.data.records import Category
from visionkit.data.synthetic._textures import OBJECT_TEXTURES, random_colours, texture
from visionkit.errors import ConfigError

MAX_SIZE = 0.5
"""Largest object size as a fraction of the image side: the widest class (a triangle's
circumcircle) then spans at most 0.88 of the image, so every object fits at any rotation."""


def _regular(corners: int, radius: float = 1.0, turn: float = 0.0) -> np.ndarray:
    angles = 2 * np.pi * (np.arange(corners) / corners + turn)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer, hollow = _regular(points), _regular(points, inner, turn=0.5 / points)
    return np.stack([outer, hollow], axis=1).reshape(-1, 2)  # alternate tip, notch


def _cross(arm: float = 0.3) -> np.ndarray:
    a = arm
    quarter = [(1, -a), (1, a), (a, a)]  # one arm tip and inner corner; the rest are rotations
    rotations = [np.array([[c, -s], [s, c]]) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))]
    return np.concatenate([np.asarray(quarter, float) @ r.T for r in rotations])


def _unit_area(polygon: np.ndarray) -> np.ndarray:
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))  # shoelace
    return polygon / np.sqrt(area)


_POLYGONS: dict[str, np.ndarray] = {
    name: _unit_area(polygon)
    for name, polygon in (
        ("circle", _regular(64)),
        ("square", _regular(4)),
        ("triangle", _regular(3)),
        ("hexagon", _regular(6)),
        ("star", _star()),
        ("cross", _cross()),
    )
}

CATEGORIES: list[Category] = [Category(i + 1, name, "shape") for i, name in enumerate(_POLYGONS)]
"""The shape classes, ids ``1..6``: told apart by outline only (colours are random)."""


def shape_mask(category_id: int, size: float, angle: float) -> np.ndarray:
    """Rasterise one shape, rotated and scaled, in its own tight canvas.

    Args:
        category_id: Id from :data:`CATEGORIES`.
        size: Square root of the shape's area, in pixels.
        angle: Rotation in radians.

    Returns:
        bool ``[h, w]``: the shape's pixels; ``h`` and ``w`` are at most ``1.76 * size + 2``.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    polygon = _POLYGONS[CATEGORIES[category_id - 1].name] @ np.array([[cos, sin], [-sin, cos]])
    polygon = polygon * size
    polygon -= polygon.min(axis=0)
    w, h = (int(v) + 1 for v in np.ceil(polygon.max(axis=0)))
    canvas = Image.new("1", (w, h))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon.tolist()], fill=1)
    return np.asarray(canvas)


@dataclass(frozen=True, eq=False)
class Sprite:
    """One textured object, ready to paste into an image.

    Args:
        category_id: Id from :data:`CATEGORIES`.
        mask: bool ``[h, w]``: the object's pixels in its own canvas.
        pixels: uint8 ``[h, w, 3]``: its texture (only read where ``mask`` is set).
    """

    category_id: int
    mask: np.ndarray
    pixels: np.ndarray


def textured(rng: np.random.Generator, category_id: int, mask: np.ndarray) -> Sprite:
    """Fill a shape mask with a random object texture in random colours."""
    h, w = mask.shape
    return Sprite(category_id, mask, texture(rng, h, w, OBJECT_TEXTURES, random_colours(rng)))


def random_shape(rng: np.random.Generator, category_id: int, size: float) -> np.ndarray:
    """:func:`shape_mask` at a uniformly random rotation."""
    return shape_mask(category_id, size, rng.uniform(0, 2 * np.pi))


def random_category(rng: np.random.Generator) -> int:
    """A category id drawn uniformly from :data:`CATEGORIES`."""
    return int(rng.integers(1, len(CATEGORIES) + 1))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A value between ``low`` and ``high`` whose logarithm is uniform (scale-free sizes)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def check_sizes(imgsz: int, min_size: float, max_size: float) -> None:
    """Raise :class:`ConfigError` unless objects of these sizes fit in an ``imgsz`` image.

    Args:
        imgsz: Image side in pixels (at least 32).
        min_size: Smallest object size, as a fraction of ``imgsz``.
        max_size: Largest object size, as a fraction of ``imgsz`` (at most :data:`MAX_SIZE`).
    """
    if imgsz < 32:
        raise ConfigError(f"must be at least 32, got {imgsz}", field="imgsz")
    if not 0 < min_size <= max_size <= MAX_SIZE:
        raise ConfigError(
            f"need 0 < min_size <= max_size <= {MAX_SIZE}, got {min_size} and {max_size}",
            field="min_size",
        )


def check_counts(min_objects: int, max_objects: int) -> None:
    """Raise :class:`ConfigError` unless ``1 <= min_objects <= max_objects``."""
    if not 1 <= min_objects <= max_objects:
        raise ConfigError(
            f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}",
            field="min_objects",
        )
