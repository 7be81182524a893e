"""Procedural textures: a weight map in ``[0, 1]`` blended between two colours.

Every texture is a :data:`WeightMap`, a function ``(rng, h, w) -> float32 [h, w]`` built from
whole-array numpy expressions (no per-pixel Python), so a 256 x 256 background costs well
under a millisecond. Object textures have hard edges (stripes, checks) or smooth variation
(noise, gradients); backgrounds are smooth (gratings, noise, gradients) so that objects stay
the sharpest structures in an image but are never separable by a flat colour threshold.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from PIL import Image

WeightMap = Callable[[np.random.Generator, int, int], np.ndarray]


def _rotated_axes(h: int, w: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates along and across direction ``theta``: two float32 ``[h, w]``."""
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    return xs * cos + ys * sin, ys * cos - xs * sin


def stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Hard-edged stripes of random period (4-16 px) and orientation."""
    along, _ = _rotated_axes(h, w, rng.uniform(0, np.pi))
    period = np.float32(rng.uniform(4, 16))
    return ((along / period) % 1 < 0.5).astype(np.float32)


def checks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A rotated checkerboard with random cell size (4-16 px)."""
    along, across = _rotated_axes(h, w, rng.uniform(0, np.pi / 2))
    period = np.float32(rng.uniform(4, 16))
    return ((np.floor(along / period) + np.floor(across / period)) % 2).astype(np.float32)


def grating(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A sinusoidal grating of random period (8-64 px), orientation and phase."""
    along, _ = _rotated_axes(h, w, rng.uniform(0, np.pi))
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    frequency = np.float32(2 * np.pi / rng.uniform(8, 64))
    return 0.5 + 0.5 * np.sin(along * frequency + phase)


def noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth value noise: a random 2-8 cell grid, bicubically upsampled and stretched to 0-1."""
    cells = int(rng.integers(2, 9))
    grid = rng.random((cells, cells), dtype=np.float32)
    # Bicubic, not bilinear: bilinear upsampling leaves visible creases along the grid lines.
    smooth = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return _stretch(smooth)


def gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A linear ramp from 0 to 1 along a random direction."""
    along, _ = _rotated_axes(h, w, rng.uniform(0, 2 * np.pi))
    return _stretch(along)


def _stretch(values: np.ndarray) -> np.ndarray:
    low = values.min()
    return (values - low) / max(float(values.max() - low), 1e-6)


OBJECT_TEXTURES: tuple[WeightMap, ...] = (stripes, checks, noise, gradient)
"""Fills for shapes."""

BACKGROUND_TEXTURES: tuple[WeightMap, ...] = (grating, noise, gradient)
"""Fills for backgrounds."""


def random_colours(rng: np.random.Generator) -> np.ndarray:
    """Two random RGB colours that differ by at least 64 levels in every channel.

    Returns:
        float32 ``[2, 3]`` in ``0..255``.
    """
    first = rng.uniform(0, 256, 3)
    # A cyclic offset of 64-192 keeps the two colours apart, so a texture never goes flat.
    second = (first + rng.uniform(64, 192, 3)) % 256
    return np.stack([first, second]).astype(np.float32)


def hue_colours(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A dark and a light colour of one hue, with random saturation and brightness.

    Args:
        rng: Random source.
        hue: Hue in turns (0-1, wraps around).

    Returns:
        float32 ``[2, 3]`` in ``0..255``.
    """
    saturation = rng.uniform(0.5, 1.0)
    values = (rng.uniform(0.3, 0.6), rng.uniform(0.75, 1.0))
    rgb = [colorsys.hsv_to_rgb(hue % 1.0, saturation, v) for v in values]
    return np.asarray(rgb, dtype=np.float32) * 255


def texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    kinds: tuple[WeightMap, ...],
    colours: np.ndarray,
) -> np.ndarray:
    """Paint one texture, chosen at random from ``kinds``, in two colours.

    Args:
        rng: Random source.
        h: Height in pixels.
        w: Width in pixels.
        kinds: The weight maps to choose from.
        colours: float32 ``[2, 3]``: the colours at weight 0 and weight 1.

    Returns:
        uint8 ``[h, w, 3]``.
    """
    weight = kinds[int(rng.integers(len(kinds)))](rng, h, w)
    # Blending through a 256-entry palette costs one uint8 gather per pixel instead of three
    # float multiply-adds per channel: the difference is half of a scene's generation time.
    palette = colours[0] + np.linspace(0, 1, 256, dtype=np.float32)[:, None] * (
        colours[1] - colours[0]
    )
    levels = (weight * np.float32(255)).astype(np.uint8)
    return np.take(palette.astype(np.uint8), levels, axis=0)
