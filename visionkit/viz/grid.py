"""Mosaics of images (sample grids, prediction galleries) and saving drawings as PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visionkit.errors import ConfigError
from visionkit.viz._arrays import as_rgb, to_numpy
from visionkit.viz._text import Font, default_font, fit_text, font_size

BACKGROUND = 255
"""Gray level of the padding, the letterbox bars and the title strips (white)."""

_TITLE_MARGIN = 2  # pixels between a title and its strip's edges


def make_grid(
    images: Sequence[Any],
    ncols: int | None = None,
    pad: int = 2,
    titles: Sequence[str] | None = None,
) -> np.ndarray:
    """Tile images into one, each letterboxed into a cell of the largest image's size.

    Each image is scaled, aspect ratio kept, until it fills its cell's width or height, and
    centred; the rest of the cell is :data:`BACKGROUND`.

    Args:
        images: ``uint8`` RGB ``[H, W, 3]`` (or gray ``[H, W]``) arrays of any sizes.
        ncols: Cells per row; None makes the grid about square. At most ``len(images)``.
        pad: Pixels between cells and around the grid.
        titles: One title per image, written in a strip above its cell (cut to fit).

    Returns:
        ``uint8`` ``[rows * (cell_h + strip) + (rows + 1) * pad,
        ncols * cell_w + (ncols + 1) * pad, 3]``, rows filled left to right.

    Raises:
        ConfigError: no images, ``ncols`` below 1, or a title count that differs.

    Example:
        >>> tiles = [np.zeros((30, 40, 3), np.uint8)] * 5
        >>> make_grid(tiles, ncols=2, pad=2).shape
        (98, 86, 3)
    """
    arrays = [as_rgb(image, "images") for image in images]
    if not arrays:
        raise ConfigError("no images to put in a grid", field="images")
    if titles is not None and len(titles) != len(arrays):
        raise ConfigError(f"{len(titles)} titles for {len(arrays)} images", field="titles")
    ncols = min(ncols or math.ceil(math.sqrt(len(arrays))), len(arrays))
    if ncols < 1:
        raise ConfigError(f"ncols must be at least 1, got {ncols}", field="ncols")
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    font = default_font(font_size(cell_w, cell_h))
    top, bottom = _title_extent(font)
    strip = bottom - top + 2 * _TITLE_MARGIN if titles is not None else 0
    nrows = math.ceil(len(arrays) / ncols)
    shape = (nrows * (cell_h + strip) + (nrows + 1) * pad, ncols * cell_w + (ncols + 1) * pad, 3)
    grid = Image.fromarray(np.full(shape, BACKGROUND, dtype=np.uint8))
    draw = ImageDraw.Draw(grid)
    for index, array in enumerate(arrays):
        row, col = divmod(index, ncols)
        x, y = pad + col * (cell_w + pad), pad + row * (cell_h + strip + pad)
        if titles is not None:
            title = fit_text(draw, str(titles[index]), font, cell_w - 2 * _TITLE_MARGIN)
            origin = (x + _TITLE_MARGIN, y + _TITLE_MARGIN - top)
            draw.text(origin, title, fill=(0, 0, 0), font=font)
        _paste_letterboxed(grid, array, (x, y + strip), (cell_w, cell_h))
    return np.array(grid)


def save_image(array: Any, path: str | Path) -> Path:
    """Write a ``uint8`` ``[H, W, 3]`` or ``[H, W]`` image, creating parent folders.

    The format follows the file's suffix (Pillow's choice); a path without one gets PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    image = to_numpy(array)
    as_rgb(image, "array")  # validates dtype and shape with a clear message
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format=None if path.suffix else "PNG")
    return path


def _title_extent(font: Font) -> tuple[int, int]:
    """``(top, bottom)`` of the font's tallest glyphs, relative to where text is drawn."""
    _, top, _, bottom = font.getbbox("Ag|")
    return int(top), int(bottom)


def _paste_letterboxed(
    grid: Image.Image, array: np.ndarray, corner: tuple[int, int], cell: tuple[int, int]
) -> None:
    """Scale ``array`` to fit ``cell`` (aspect ratio kept) and paste it centred at ``corner``."""
    height, width = array.shape[:2]
    scale = min(cell[0] / width, cell[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    tile = Image.fromarray(array)
    if size != tile.size:
        tile = tile.resize(size, Image.Resampling.BILINEAR)
    grid.paste(tile, (corner[0] + (cell[0] - size[0]) // 2, corner[1] + (cell[1] - size[1]) // 2))
