"""Selective-search region proposals (Uijlings et al., IJCV 2013), R-CNN's proposal stage.

OpenCV contrib's ``ximgproc`` implementation in its fast mode (two colour spaces, two
graph-segmentation thresholds, the colour-texture-size-fill similarities): it groups the
image's superpixels bottom-up and proposes the box of every group formed. On the synthetic
``shapes`` scenes it takes about 55 ms for a 128 px image (about 200 boxes, 76 % of the
objects found at IoU >= 0.5, the misses being the smallest objects) and 250 ms at 256 px
(about 560 boxes, 93 %); ``scale=2`` on 128 px images finds 99 % in 400 ms.

OpenCV ranks the boxes as the paper does, by hierarchy level times a random number, and
draws the random numbers with the C library's ``rand()``; :func:`selective_search` seeds
it first, so one image always gives the same boxes in the same order (when no other
thread draws from ``rand()`` meanwhile).

OpenCV is imported inside the call, so importing visionkit does not load it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import numpy as np
import torch

from visionkit.errors import ConfigError, ImageError
from visionkit.ops.boxes import box_convert

__all__ = ["selective_search"]

_REINSTALL = "pip install --force-reinstall --no-deps opencv-contrib-python-headless"


def _ximgproc_segmentation() -> Any:
    """``cv2.ximgproc.segmentation``, or a ConfigError saying how to get OpenCV contrib."""
    try:
        import cv2
    except ImportError:
        raise ConfigError(
            f"selective search needs OpenCV contrib; install it with `{_REINSTALL}`"
        ) from None
    segmentation = getattr(getattr(cv2, "ximgproc", None), "segmentation", None)
    if segmentation is None:
        # opencv-python and opencv-contrib-python-headless both own the `cv2` folder: the
        # one installed last wins, and only contrib has ximgproc.
        raise ConfigError(
            "cv2.ximgproc is missing: another OpenCV wheel (opencv-python) replaced "
            f"OpenCV contrib; restore it with `{_REINSTALL}`"
        )
    return segmentation


def _seed_c_rand() -> None:
    """Seed the C library's ``rand()``, which OpenCV's selective search ranks boxes with."""
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).srand(1)


def selective_search(
    image: np.ndarray, *, max_proposals: int = 2000, scale: float = 1.0, min_size: float = 2.0
) -> torch.Tensor:
    """Selective-search proposals of one image, best-ranked first.

    Args:
        image: ``uint8`` ``[H, W, 3]`` RGB image.
        max_proposals: Most boxes returned (the first ones in OpenCV's ranking).
        scale: Resize factor applied before the search (boxes are mapped back): above 1
            finds smaller objects in small images, at a cost growing with the area.
        min_size: Boxes narrower or lower than this many pixels (of ``image``) are dropped.

    Returns:
        ``float32`` ``[N, 4]`` xyxy boxes in ``image`` pixels, ``N <= max_proposals``,
        without duplicates.

    Raises:
        ImageError: ``image`` is not a ``uint8`` ``[H, W, 3]`` array.
        ConfigError: A setting is out of range, or OpenCV contrib (``cv2.ximgproc``) is
            not installed.

    Example:
        >>> boxes = selective_search(np.zeros((64, 64, 3), np.uint8))  # doctest: +SKIP
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
        raise ImageError("selective search takes a uint8 [H, W, 3] RGB array", field="image")
    if image.shape[2] != 3:
        raise ImageError(f"expected 3 channels, got {image.shape[2]}", field="image")
    if max_proposals < 1 or scale <= 0:
        raise ConfigError(
            f"max_proposals must be >= 1 and scale > 0, got {max_proposals} and {scale}",
            field="proposals",
        )
    segmentation = _ximgproc_segmentation()
    import cv2

    bgr = np.ascontiguousarray(image[:, :, ::-1])  # OpenCV's HSV and Lab expect BGR
    if scale != 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    search = segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    search.switchToSelectiveSearchFast()
    _seed_c_rand()
    rects = search.process().reshape(-1, 4)
    _, first = np.unique(rects, axis=0, return_index=True)
    rects = rects[np.sort(first)]  # duplicates out, ranking kept
    boxes = box_convert(rects.astype(np.float32), "xywh", "xyxy") / np.float32(scale)
    sides = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[(sides >= min_size).all(axis=1)][:max_proposals]
    return torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
