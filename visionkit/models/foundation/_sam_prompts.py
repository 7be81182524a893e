"""Checking what a user hands to :class:`~visionkit.models.foundation.SamPredictor`: the
image, and prompts in the original image's pixels.

Every refusal is a :class:`~visionkit.errors.ConfigError` whose field is the argument at
fault (``image``, ``points``, ``point_labels``, ``box``, ``mask_input``) and whose message
says what was expected and what came.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.data.images import read_image
from visionkit.errors import ConfigError

__all__ = ["check_box", "check_mask_input", "check_points", "rgb_image"]


def rgb_image(image: Any) -> np.ndarray:
    """``image`` as ``uint8`` RGB ``[H, W, 3]``.

    Args:
        image: A ``uint8`` RGB ``[H, W, 3]`` or gray ``[H, W]`` array, a PIL image, or an
            image file (read by :func:`~visionkit.data.images.read_image`).

    Raises:
        ConfigError: An array of another dtype or shape, or another type (field ``image``).
        ImageError: The file cannot be read.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.array(image.convert("RGB"))
    array = image if isinstance(image, np.ndarray) else None
    if array is not None and array.dtype == np.uint8 and array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        got = f"{array.dtype} {list(array.shape)}" if array is not None else type(image).__name__
        raise ConfigError(
            f"expected a uint8 RGB array [H, W, 3] (or gray [H, W]), a PIL image or an "
            f"image file, got {got}",
            field="image",
        )
    # transformers turns the array into a tensor in place, which needs writable memory.
    return array if array.flags.writeable else array.copy()


def _float_array(values: Any, field: str) -> np.ndarray:
    """``values`` as a finite float64 array, else a ConfigError naming ``field``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"not an array of numbers ({error})", field=field) from None
    if not np.isfinite(array).all():
        raise ConfigError("holds NaN or infinite values", field=field)
    return array


def _check_inside(coords: np.ndarray, width: int, height: int, field: str) -> None:
    """Refuse ``(x, y)`` pairs outside ``[0, W] x [0, H]``, naming the first one."""
    xy = coords.reshape(-1, 2)
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
    if outside.any():
        x, y = xy[int(np.argmax(outside))]
        raise ConfigError(
            f"({x:g}, {y:g}) is outside the {width}x{height} (WxH) image; coordinates are "
            "the original image's pixels",
            field=field,
        )


def check_points(
    points: Any | None, labels: Any | None, width: int, height: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Points ``[N, 2]`` float64 and labels ``[N]`` int64, checked; ``(None, None)`` if none."""
    if points is None:
        if labels is not None:
            raise ConfigError("point_labels given without points", field="point_labels")
        return None, None
    coords = _float_array(points, "points")
    if coords.shape == (2,):
        coords = coords[None]
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
        raise ConfigError(
            f"expected [N, 2] (x, y) points with N >= 1, got shape {list(coords.shape)}",
            field="points",
        )
    _check_inside(coords, width, height, "points")
    if labels is None:
        return torch.from_numpy(coords), torch.ones(len(coords), dtype=torch.int64)
    values = _float_array(labels, "point_labels").reshape(-1)
    if values.shape != (len(coords),) or not np.isin(values, (0, 1)).all():
        raise ConfigError(
            f"expected {len(coords)} labels of 1 (foreground) or 0 (background), got "
            f"{values.tolist()}",
            field="point_labels",
        )
    return torch.from_numpy(coords), torch.from_numpy(values.astype(np.int64))


def check_box(box: Any, width: int, height: int) -> torch.Tensor:
    """A box ``[4]`` float64 inside the image with ``x0 < x1`` and ``y0 < y1``."""
    array = _float_array(box, "box")
    if array.size != 4 or array.ndim > 2:
        raise ConfigError(
            f"expected one box (x0, y0, x1, y1), got shape {list(array.shape)}", field="box"
        )
    x0, y0, x1, y1 = array.reshape(4)
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(
            f"({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not xyxy with x0 < x1 and y0 < y1", field="box"
        )
    _check_inside(array, width, height, "box")
    return torch.from_numpy(array.reshape(4))


def check_mask_input(mask_input: Any, side: int) -> torch.Tensor:
    """Low-resolution logits ``[L, L]`` (a leading 1 is allowed), as float32."""
    array = _float_array(mask_input, "mask_input")
    if array.shape not in ((side, side), (1, side, side)):
        raise ConfigError(
            f"expected low-resolution logits [{side}, {side}] (a row of PromptMasks.logits), "
            f"got shape {list(array.shape)}",
            field="mask_input",
        )
    return torch.from_numpy(array.reshape(side, side).astype(np.float32))
