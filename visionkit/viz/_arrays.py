"""Turning what callers pass (numpy arrays, torch tensors, lists) into checked numpy arrays.

Tensors are recognised by their methods, not by importing torch, so :mod:`visionkit.viz`
loads without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visionkit.errors import ConfigError


def to_numpy(values: Any) -> np.ndarray:
    """A numpy view of an array, a list or a torch tensor (detached and moved to the CPU)."""
    if hasattr(values, "detach"):
        values = values.detach()
    if hasattr(values, "cpu"):
        values = values.cpu()
    return np.asarray(values)


def as_rgb(image: Any, name: str = "image") -> np.ndarray:
    """Check that ``image`` is ``uint8`` ``[H, W, 3]`` or gray ``[H, W]``; return it as RGB.

    Raises:
        ConfigError: another dtype or shape (``name`` is the argument named in the message).
    """
    array = to_numpy(image)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        raise ConfigError(
            f"expected a uint8 array [H, W, 3] or [H, W], got {array.dtype} {list(array.shape)}",
            field=name,
        )
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array
