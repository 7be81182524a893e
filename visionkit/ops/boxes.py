"""Box format conversions, the IoU family and NMS: the one place boxes change shape.

Boxes are ``xyxy`` absolute pixels everywhere inside visionkit; COCO files store
``xywh`` and YOLO files normalised ``cxcywh``, and each format converts here, once,
at its edge. The conversions accept numpy arrays and torch tensors alike (``[..., 4]``)
and return the same type, so the data layer can use them without importing torch.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

ArrayT = TypeVar("ArrayT")


def _stack(columns: list, like: ArrayT) -> ArrayT:
    """Stack four ``[...]`` columns into ``[..., 4]`` with the array library of ``like``."""
    if isinstance(like, np.ndarray):
        return np.stack(columns, axis=-1)
    import torch

    return torch.stack(columns, dim=-1)


def _to_xyxy(boxes: ArrayT, fmt: str) -> ArrayT:
    a, b, c, d = (boxes[..., i] for i in range(4))
    if fmt == "xyxy":
        return boxes
    if fmt == "xywh":
        return _stack([a, b, a + c, b + d], boxes)
    return _stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], boxes)


def _from_xyxy(boxes: ArrayT, fmt: str) -> ArrayT:
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    if fmt == "xyxy":
        return boxes
    if fmt == "xywh":
        return _stack([x1, y1, x2 - x1, y2 - y1], boxes)
    return _stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], boxes)


def box_convert(boxes: ArrayT, in_fmt: str, out_fmt: str) -> ArrayT:
    """Convert boxes between ``xyxy``, ``xywh`` (COCO) and ``cxcywh`` (YOLO, DETR).

    Args:
        boxes: ``[..., 4]`` numpy array or torch tensor (floating point).
        in_fmt: Format of ``boxes``: one of :data:`BOX_FORMATS`.
        out_fmt: Wanted format: one of :data:`BOX_FORMATS`.

    Returns:
        ``[..., 4]`` boxes of the same type and dtype, in ``out_fmt``.

    Example:
        >>> box_convert(np.array([[10.0, 20.0, 30.0, 40.0]]), "xywh", "xyxy")
        array([[10., 20., 40., 60.]])
    """
    for fmt in (in_fmt, out_fmt):
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
    if in_fmt == out_fmt:
        return boxes
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def normalize_boxes(boxes: ArrayT, width: float, height: float) -> ArrayT:
    """Divide ``[..., 4]`` box coordinates (any format) by the image size, giving 0-1 values."""
    return boxes / _scale_like(boxes, width, height)


def denormalize_boxes(boxes: ArrayT, width: float, height: float) -> ArrayT:
    """Multiply normalised ``[..., 4]`` box coordinates (any format) by the image size."""
    return boxes * _scale_like(boxes, width, height)


def _scale_like(boxes: ArrayT, width: float, height: float) -> ArrayT:
    scale = [width, height, width, height]
    if isinstance(boxes, np.ndarray):
        return np.asarray(scale, dtype=boxes.dtype)
    import torch

    return torch.tensor(scale, dtype=boxes.dtype, device=boxes.device)
