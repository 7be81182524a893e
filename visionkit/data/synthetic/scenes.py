"""The ``shapes`` generator: textured shapes, overlapping, on textured backgrounds.

Each scene holds a few objects of the :data:`CATEGORIES` classes with boxes, visible
instance masks and a semantic map. Sizes are log-uniform, so COCO's small (< 32^2 px),
medium and large (> 96^2 px) ranges are all well populated at 256 px; objects overlap,
but a placement that would hide more than ``1 - min_visible`` of any object is retried
smaller elsewhere, so every label stays recognisable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionkit.data.synthetic._canvas import Canvas, Scene, generator_rng
from visionkit.data.synthetic._shapes import (
    check_counts,
    check_sizes,
    log_uniform,
    random_category,
    random_shape,
    textured,
)
from visionkit.data.synthetic._textures import BACKGROUND_TEXTURES, random_colours, texture
from visionkit.errors import ConfigError

_STREAM = 0  # random stream of this generator (see generator_rng)
_SHRINK = 0.9  # size factor after each failed placement: crowded scenes still fit something


@dataclass(frozen=True)
class ShapesConfig:
    """Settings of the ``shapes`` generator.

    Args:
        imgsz: Image side in pixels (images are square).
        min_objects: Fewest objects to try to place.
        max_objects: Most objects to place.
        min_size: Smallest object size (square root of its area) as a fraction of ``imgsz``.
        max_size: Largest object size as a fraction of ``imgsz`` (at most 0.5).
        min_visible: Smallest share of each object's pixels left visible by occluders.
        placement_tries: Placements tried for one object before it is dropped.
    """

    imgsz: int = 256
    min_objects: int = 1
    max_objects: int = 8
    min_size: float = 0.04
    max_size: float = 0.5
    min_visible: float = 0.4
    placement_tries: int = 10

    def __post_init__(self) -> None:
        check_sizes(self.imgsz, self.min_size, self.max_size)
        check_counts(self.min_objects, self.max_objects)
        if not 0 <= self.min_visible <= 1:
            raise ConfigError(f"must be in [0, 1], got {self.min_visible}", field="min_visible")
        if self.placement_tries < 1:
            raise ConfigError(f"must be >= 1, got {self.placement_tries}", field="placement_tries")


def background(rng: np.random.Generator, imgsz: int, colours: np.ndarray) -> np.ndarray:
    """A random background texture (grating, smooth noise or gradient) in two colours.

    Returns:
        uint8 ``[imgsz, imgsz, 3]``.
    """
    return texture(rng, imgsz, imgsz, BACKGROUND_TEXTURES, colours)


def random_position(rng: np.random.Generator, shape: tuple[int, int], imgsz: int) -> np.ndarray:
    """Top-left corner ``(x, y)`` that keeps an ``(h, w)`` sprite inside the image: int64 [2]."""
    h, w = shape
    return rng.integers(0, [imgsz - w + 1, imgsz - h + 1])


def make_scene(seed: int, index: int, config: ShapesConfig = ShapesConfig()) -> Scene:
    """Make scene ``index`` of the ``shapes`` data set drawn with ``seed``.

    The object count is drawn from ``[min_objects, max_objects]``; objects that find no
    placement keeping everyone ``min_visible`` visible are dropped, so a crowded scene may
    hold fewer (never none: the first object always fits).

    Args:
        seed: Data set seed (>= 0).
        index: Sample index (>= 0); any index can be made alone, in any order.
        config: Generator settings.

    Returns:
        The scene; the same arguments always give identical arrays.

    Example:
        >>> scene = make_scene(0, 7)
        >>> scene.image.shape, scene.boxes.shape[1], bool(scene.masks.any(axis=(1, 2)).all())
        ((256, 256, 3), 4, True)
    """
    rng = generator_rng(seed, index, _STREAM)
    canvas = Canvas(background(rng, config.imgsz, random_colours(rng)))
    for _ in range(rng.integers(config.min_objects, config.max_objects + 1)):
        _place(canvas, rng, config)
    return canvas.scene()


def _place(canvas: Canvas, rng: np.random.Generator, config: ShapesConfig) -> None:
    """Paint one random object where it hides no one too much, or nothing after all tries."""
    category_id = random_category(rng)
    size = log_uniform(rng, config.min_size * config.imgsz, config.max_size * config.imgsz)
    for _ in range(config.placement_tries):
        mask = random_shape(rng, category_id, size)
        x, y = random_position(rng, mask.shape, config.imgsz)
        if canvas.keeps_visible(mask, x, y, config.min_visible):
            canvas.paint(textured(rng, category_id, mask), x, y)
            return
        size *= _SHRINK
