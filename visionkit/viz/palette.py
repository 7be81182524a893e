"""The colours that every visionkit drawing uses for classes and tracks.

The palette is Kelly's set of colours of maximum contrast (K. L. Kelly, "Twenty-two
colors of maximum contrast", Color Engineering 3(6), 1965) without its white and black,
which vanish on bright and dark images. Class ``k`` (or track ``k``) is always drawn in
``PALETTE[k % 20]``, so a class keeps its colour across images, plots and runs.
"""

from __future__ import annotations

import numpy as np

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (243, 195, 0),  # yellow
    (135, 86, 146),  # purple
    (243, 132, 0),  # orange
    (161, 202, 241),  # light blue
    (190, 0, 50),  # red
    (194, 178, 128),  # buff
    (132, 132, 130),  # grey
    (0, 136, 86),  # green
    (230, 143, 172),  # purplish pink
    (0, 103, 165),  # blue
    (249, 147, 121),  # yellowish pink
    (96, 78, 151),  # violet
    (246, 166, 0),  # orange yellow
    (179, 68, 108),  # purplish red
    (220, 211, 0),  # greenish yellow
    (136, 45, 23),  # reddish brown
    (141, 182, 0),  # yellow green
    (101, 69, 34),  # yellowish brown
    (226, 88, 34),  # reddish orange
    (43, 61, 38),  # olive green
)
"""Twenty distinguishable RGB colours; index them with :func:`color_for`."""

_PALETTE_ARRAY = np.asarray(PALETTE, dtype=np.uint8)


def color_for(index: int) -> RGB:
    """The palette colour of class or track ``index`` (any integer; the palette repeats).

    Example:
        >>> color_for(0) == color_for(20)
        True
    """
    return PALETTE[int(index) % len(PALETTE)]


def colors_for(indices: np.ndarray) -> np.ndarray:
    """Palette colours of an integer array: ``uint8`` of shape ``indices.shape + (3,)``."""
    return _PALETTE_ARRAY[np.asarray(indices, dtype=np.int64) % len(PALETTE)]


def text_color(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)
