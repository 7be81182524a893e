"""The ``shapes-video`` generator: moving, occluding shapes with tracks and optical flow.

Objects are ``shapes`` sprites that translate at a constant integer velocity over a static
background and bounce off the image borders; their depth order is fixed (the first one is
at the back). Because motion is a whole-pixel translation of an unchanging sprite, the
ground truth is exact: each pixel an object shows at frame ``t`` moves by the object's
displacement and, unless something is in front of it then, shows the same colour at
``t + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionkit.data.synthetic._canvas import Canvas, Scene, generator_rng
from visionkit.data.synthetic._shapes import (
    Sprite,
    check_counts,
    check_sizes,
    log_uniform,
    random_category,
    random_shape,
    textured,
)
from visionkit.data.synthetic._textures import random_colours
from visionkit.data.synthetic.scenes import background, random_position
from visionkit.errors import ConfigError

_STREAM = 2  # random stream of this generator (see generator_rng)


@dataclass(frozen=True)
class VideoConfig:
    """Settings of the ``shapes-video`` generator.

    Args:
        imgsz: Frame side in pixels (frames are square).
        frames: Frames per clip (at least 2).
        min_objects: Fewest objects in a clip.
        max_objects: Most objects in a clip.
        min_size: Smallest object size (square root of its area) as a fraction of ``imgsz``.
        max_size: Largest object size as a fraction of ``imgsz`` (at most 0.5).
        max_speed: Largest speed along each axis, in pixels per frame.
    """

    imgsz: int = 256
    frames: int = 8
    min_objects: int = 2
    max_objects: int = 5
    min_size: float = 0.06
    max_size: float = 0.25
    max_speed: int = 6

    def __post_init__(self) -> None:
        check_sizes(self.imgsz, self.min_size, self.max_size)
        check_counts(self.min_objects, self.max_objects)
        if self.frames < 2:
            raise ConfigError(f"must be at least 2, got {self.frames}", field="frames")
        if self.max_speed < 1:
            raise ConfigError(f"must be at least 1, got {self.max_speed}", field="max_speed")


@dataclass(frozen=True, eq=False)
class Frame(Scene):
    """One frame of a clip: a :class:`Scene` whose objects carry track ids.

    Args:
        track_ids: int64 ``[N]``: the id (1..number of objects) of each object in this frame,
            the same in every frame; objects hidden completely are absent from the frame.
    """

    track_ids: np.ndarray


@dataclass(frozen=True, eq=False)
class Clip:
    """One clip of ``shapes-video``.

    Args:
        frames: ``T`` frames, in time order.
        flow: float32 ``[T-1, H, W, 2]``: forward flow ``(dx, dy)`` from frame ``t`` to
            ``t + 1``: the displacement of the object on top at each pixel, 0 on background.
    """

    frames: tuple[Frame, ...]
    flow: np.ndarray

    @property
    def images(self) -> np.ndarray:
        """uint8 ``[T, H, W, 3]``: every frame's image."""
        return np.stack([frame.image for frame in self.frames])


def make_clip(seed: int, index: int, config: VideoConfig = VideoConfig()) -> Clip:
    """Make clip ``index`` of the ``shapes-video`` data set drawn with ``seed``.

    Args:
        seed: Data set seed (>= 0).
        index: Clip index (>= 0); any index can be made alone, in any order.
        config: Generator settings.

    Returns:
        The clip; the same arguments always give identical arrays.

    Example:
        >>> clip = make_clip(0, 1, VideoConfig(frames=4))
        >>> len(clip.frames), clip.flow.shape
        (4, (3, 256, 256, 2))
    """
    rng = generator_rng(seed, index, _STREAM)
    still = background(rng, config.imgsz, random_colours(rng))
    count = rng.integers(config.min_objects, config.max_objects + 1)
    sprites = [_random_sprite(rng, config) for _ in range(count)]
    paths = np.stack([_bounce_path(rng, s.mask.shape, config) for s in sprites], axis=1)
    canvases = [_paint_all(still, sprites, corners) for corners in paths]  # paths: [T, N, 2]
    moves = np.diff(paths, axis=0).astype(np.float32)  # [T-1, N, 2]
    flow = [canvases[t].lookup(moves[t], background=0) for t in range(len(moves))]
    return Clip(tuple(_frame(canvas) for canvas in canvases), np.stack(flow))


def _random_sprite(rng: np.random.Generator, config: VideoConfig) -> Sprite:
    category_id = random_category(rng)
    size = log_uniform(rng, config.min_size * config.imgsz, config.max_size * config.imgsz)
    return textured(rng, category_id, random_shape(rng, category_id, size))


def _bounce_path(
    rng: np.random.Generator, shape: tuple[int, int], config: VideoConfig
) -> np.ndarray:
    """Top-left corners ``(x, y)`` over time, int64 ``[T, 2]``, for an ``(h, w)`` sprite.

    The velocity is constant except that an axis reverses when the next step would leave
    the image; the sprite always stays wholly inside it.
    """
    limit = config.imgsz - np.array(shape[::-1])  # largest corner (x, y) that still fits
    velocity = np.zeros(2, dtype=np.int64)
    while not velocity.any():  # a still object would make a dull track
        velocity = rng.integers(-config.max_speed, config.max_speed + 1, size=2)
    corners = [random_position(rng, shape, config.imgsz)]
    for _ in range(config.frames - 1):
        ahead = corners[-1] + velocity
        velocity = np.where((ahead < 0) | (ahead > limit), -velocity, velocity)
        corners.append(np.clip(corners[-1] + velocity, 0, limit))
    return np.stack(corners)


def _paint_all(still: np.ndarray, sprites: list[Sprite], corners: np.ndarray) -> Canvas:
    canvas = Canvas(still)
    for sprite, (x, y) in zip(sprites, corners, strict=True):
        canvas.paint(sprite, x, y)
    return canvas


def _frame(canvas: Canvas) -> Frame:
    scene = canvas.scene()
    return Frame(**vars(scene), track_ids=canvas.on_top() + 1)
