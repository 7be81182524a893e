"""Reading image and mask files into numpy arrays, the one way visionkit does it.

Every image, whatever its mode, becomes ``uint8`` RGB ``[H, W, 3]`` as it is *displayed*:
EXIF orientation is applied (a phone photo stored sideways with orientation 6 comes out
upright, and boxes drawn in an annotation tool on the upright photo line up). Conversions:

- gray (``L``), 1-bit (``1``), palette (``P``), ``CMYK``, ``YCbCr``...: Pillow's own
  conversion to RGB;
- alpha (``RGBA``, ``LA``, ``PA``, palette or gray with a transparent colour): composited
  over :data:`ALPHA_BACKGROUND`. Fully transparent pixels often hold leftover colours
  (black, or whatever the editor kept) that no viewer shows; dropping the alpha channel
  would feed those hidden colours to a model as content, while compositing gives every
  file the image a person sees on a plain page;
- 16-bit (``I;16*``) and 32-bit integer (``I``, which is how Pillow opens some 16-bit PNG
  and TIFF files): the fixed full 16-bit range ``0..65535`` maps linearly to ``0..255``
  (values outside it are clipped). 16-bit files, from depth sensors to scientific cameras,
  use that whole range, and a fixed scale keeps one stored value one gray level in every
  image; Pillow's ``convert("L")`` would instead clip everything above 255 to white;
- 32-bit float (``F``): stretched from the image's own minimum to its maximum (NaN as
  the minimum), because float images carry no range convention (0-1 from scientific tools,
  0-255 from Pillow, metres in depth maps); a constant image becomes black.

Truncated or corrupt files are errors, never half-grey images: decoding is forced in full
and Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default, False.

This module does not import torch, so ``visionkit data check`` starts fast.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from visionkit.errors import ImageError

ALPHA_BACKGROUND = (255, 255, 255)
"""RGB colour that transparent images are composited over (white, as on a plain page)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes that dataset folders treat as images (torchvision's ``IMG_EXTENSIONS``)."""

MASK_MODES = ("L", "P")
"""Pillow modes that :func:`read_mask` accepts: 8-bit gray and palette (index) PNGs."""

# Pillow reports a broken file through any of these, depending on the plugin and the byte
# where the file breaks.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)

# Orientations 5-8 turn the stored image by 90 degrees, swapping width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def is_image_file(path: str | Path) -> bool:
    """Whether ``path``'s suffix (any case) is one of :data:`IMAGE_SUFFIXES`; reads nothing."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@contextmanager
def _open(path: str | Path, *, decode: bool) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow, turning every failure into an :class:`ImageError`.

    Args:
        path: Image file.
        decode: Decode every pixel now (finds truncated and corrupt data), not only the header.

    Yields:
        The open image; it is closed when the block ends.
    """
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            yield image
    except FileNotFoundError:
        raise ImageError("no such image file", file=path) from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image file", file=path) from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image file (unknown or damaged header)", file=path) from None
    except _DECODE_ERRORS as error:
        raise ImageError(f"cannot decode the image: {error}", file=path) from None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as displayed: EXIF orientation applied, any mode converted to RGB.

    Args:
        path: Image file in any format Pillow reads (JPEG, PNG, TIFF, BMP, WebP...).

    Returns:
        ``uint8`` array ``[H, W, 3]``, RGB, with ``H`` and ``W`` after EXIF rotation.
        The module docstring lists how each mode is converted.

    Raises:
        ImageError: the file is missing, not an image, truncated or corrupt.

    Example:
        >>> read_image("photo.jpg").shape  # doctest: +SKIP
        (512, 512, 3)
    """
    with _open(path, decode=True) as image:
        return _to_rgb(ImageOps.exif_transpose(image))


def image_size(path: str | Path) -> tuple[int, int]:
    """Size of an image as displayed, read from the header only (no pixel decoding).

    Args:
        path: Image file.

    Returns:
        ``(width, height)`` in pixels after EXIF orientation: swapped for orientations 5-8,
        so it equals the size of :func:`read_image`'s result.

    Raises:
        ImageError: the file is missing or its header is not an image's.
    """
    with _open(path, decode=False) as image:
        width, height = image.size
        orientation = _header_exif(image).get(ExifTags.Base.Orientation, 1)
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def recorded_size(path: str | Path) -> tuple[int, int]:
    """:func:`image_size`, or ``(0, 0)`` when the header cannot be read.

    For readers that build a catalog without stopping at a bad image: a zero size is
    reported, with the file, by :mod:`visionkit.data.check`, which opens every image.
    """
    try:
        return image_size(path)
    except ImageError:
        return (0, 0)


def verify_image(path: str | Path) -> ImageError | None:
    """Decode an image in full and report, not raise, what is wrong with it.

    Args:
        path: Image file.

    Returns:
        None when every pixel decodes, else the :class:`ImageError` that :func:`read_image`
        would raise (for checkers that collect faults instead of stopping at the first).
    """
    try:
        with _open(path, decode=True):
            return None
    except ImageError as error:
        return error


def read_mask(path: str | Path) -> np.ndarray:
    """Read a semantic mask whose pixel values are class indices.

    Args:
        path: 8-bit gray (``L``) or palette (``P``) image, usually PNG. For a palette image
            the stored palette *indices* are returned, not the colours they are drawn in,
            as in Pascal VOC's ``SegmentationClass`` PNGs.

    Returns:
        ``uint8`` array ``[H, W]`` of class indices, EXIF orientation applied as in
        :func:`read_image` so the mask stays aligned with its image.

    Raises:
        ImageError: the file cannot be read, or it is not a gray or palette image (an RGB
            mask would need a colour-to-class table, which visionkit does not guess).
    """
    with _open(path, decode=True) as image:
        if image.mode not in MASK_MODES:
            raise ImageError(
                f"a semantic mask must store class indices as 8-bit gray (L) or palette (P) "
                f"pixels; this file is mode {image.mode}. Convert colours to class indices "
                f"and save the mask as a gray or palette PNG",
                file=path,
            )
        return np.asarray(ImageOps.exif_transpose(image), dtype=np.uint8).copy()


def _header_exif(image: Image.Image) -> Image.Exif:
    """EXIF of ``image`` without decoding pixels.

    Pillow's PNG plugin decodes the whole image to look for an ``eXIf`` chunk after the
    pixel data; the base implementation reads what the header holds, which is where
    writers put it (the PNG extensions ask for ``eXIf`` before ``IDAT``).
    """
    return Image.Image.getexif(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to ``uint8`` RGB ``[H, W, 3]``."""
    if image.mode == "F":
        return _gray_to_rgb(_stretch(np.asarray(image, dtype=np.float64)))
    if image.mode == "I" or image.mode.startswith("I;16"):
        return _gray_to_rgb(_scale_16bit(np.asarray(image)))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _composite(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """Map integer values in ``0..65535`` linearly (rounded) to ``uint8`` ``0..255``."""
    clipped = np.clip(values.astype(np.int64), 0, 65535)
    return ((clipped * 255 + 65535 // 2) // 65535).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map float values from their own min..max to ``uint8`` ``0..255`` (NaN as the min)."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = values[finite].min(), values[finite].max()
    values = np.clip(np.where(finite, values, low), low, high)
    span = high - low
    if span == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / span)).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Repeat a ``uint8`` ``[H, W]`` channel three times: ``[H, W, 3]``."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def _composite(rgba: np.ndarray) -> np.ndarray:
    """Blend ``uint8`` RGBA ``[H, W, 4]`` over :data:`ALPHA_BACKGROUND`, giving ``[H, W, 3]``."""
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:].astype(np.uint32)
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.uint32)
    blended = (rgb * alpha + background * (255 - alpha) + 127) // 255
    return blended.astype(np.uint8)
