"""Box format conversions, the IoU family and NMS: the one place boxes change shape.

Boxes are ``xyxy`` absolute pixels everywhere inside visionkit; COCO files store
``xywh`` and YOLO files normalised ``cxcywh``, and each format converts here, once,
at its edge. Every function accepts numpy arrays and torch tensors alike and returns
the same type, so the data layer and the metrics can use them without importing torch;
only NMS, which runs torchvision's kernel, imports torch (inside the call).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from visionkit.errors import ConfigError

if TYPE_CHECKING:
    import torch

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
            raise ConfigError(f"unknown box format {fmt!r}; expected one of {BOX_FORMATS}")
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


def box_area(boxes: ArrayT) -> ArrayT:
    """Area of ``xyxy`` boxes.

    Args:
        boxes: ``[..., 4]`` numpy array or torch tensor, ``xyxy``.

    Returns:
        ``[...]`` areas, same type; negative for boxes with ``x2 < x1`` xor ``y2 < y1``
        (as torchvision's ``box_area``: use :func:`valid_boxes` to find them).

    Example:
        >>> box_area(np.array([[0.0, 0.0, 2.0, 3.0]]))
        array([6.])
    """
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def valid_boxes(boxes: ArrayT) -> ArrayT:
    """Which ``xyxy`` boxes have positive width and height (``x2 > x1`` and ``y2 > y1``).

    Args:
        boxes: ``[..., 4]`` numpy array or torch tensor, ``xyxy``.

    Returns:
        ``[...]`` bool mask, same type.

    Example:
        >>> valid_boxes(np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 2.0, 1.0]]))
        array([ True, False])
    """
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def clip_boxes(boxes: ArrayT, height: float, width: float) -> ArrayT:
    """Clip ``xyxy`` boxes to an image: x to ``[0, width]``, y to ``[0, height]``.

    Args:
        boxes: ``[..., 4]`` numpy array or torch tensor, ``xyxy`` absolute pixels.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        ``[..., 4]`` clipped boxes, same type (a new array; ``boxes`` is not changed).
        A box wholly outside the image becomes degenerate (see :func:`valid_boxes`).

    Example:
        >>> clip_boxes(np.array([[-5.0, 2.0, 30.0, 50.0]]), height=40, width=20)
        array([[ 0.,  2., 20., 40.]])
    """
    limits = (width, height, width, height)
    return _stack([boxes[..., i].clip(0, limits[i]) for i in range(4)], boxes)


def box_iou(a: ArrayT, b: ArrayT) -> ArrayT:
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    Args:
        a: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        b: ``[M, 4]`` of the same type, ``xyxy``.

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``, same type; 0 where the union is empty (two
        degenerate boxes), where torchvision would give NaN.

    Example:
        >>> box_iou(np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[1.0, 0.0, 3.0, 1.0]]))
        array([[0.33333333]])
    """
    return _iou(*_pairwise(a, b))[0]


def paired_box_iou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    """Intersection over union of each box with its partner: ``a[i]`` with ``b[i]``.

    The diagonal of :func:`box_iou` without the ``[N, N]`` matrix, e.g. a tracker's box
    against the ground truth of the same frame. The ``paired_*`` functions are what box
    regression losses are made of (:mod:`visionkit.ops.losses`); they are differentiable
    in torch, with finite gradients for degenerate and identical boxes.

    Args:
        a: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        b: ``[N, 4]`` of the same type, ``xyxy``.
        eps: Added to every denominator, as torchvision's IoU losses do (they use 1e-7);
            0 gives the exact value.

    Returns:
        ``[N]`` IoU in ``[0, 1]``, same type; 0 where the union is empty.

    Example:
        >>> paired_box_iou(np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[1.0, 0.0, 3.0, 1.0]]))
        array([0.33333333])
    """
    return _iou(*_paired(a, b), eps)[0]


def generalized_box_iou(a: ArrayT, b: ArrayT) -> ArrayT:
    """Pairwise generalised IoU: ``IoU - (C - U) / C`` with ``C`` the enclosing box's area.

    Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019.

    Args:
        a: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        b: ``[M, 4]`` of the same type, ``xyxy``.

    Returns:
        ``[N, M]`` GIoU in ``[-1, 1]``, same type.

    Example:
        >>> generalized_box_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[2.0, 0.0, 3.0, 1.0]]))
        array([[-0.33333333]])
    """
    return _giou(*_pairwise(a, b))


def paired_generalized_box_iou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    """Generalised IoU of each box with its partner, ``[N, 4]`` and ``[N, 4]`` -> ``[N]``.

    :func:`generalized_box_iou` for the pairs ``(a[i], b[i])``; ``eps`` as in
    :func:`paired_box_iou`.
    """
    return _giou(*_paired(a, b), eps)


def distance_box_iou(a: ArrayT, b: ArrayT) -> ArrayT:
    """Pairwise distance IoU: ``IoU - d^2 / c^2``.

    ``d`` is the distance between the box centres and ``c`` the diagonal of the smallest
    box enclosing both (Zheng et al., "Distance-IoU Loss", AAAI 2020).

    Args:
        a: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        b: ``[M, 4]`` of the same type, ``xyxy``.

    Returns:
        ``[N, M]`` DIoU in ``[-1, 1]``, same type.

    Example:
        >>> distance_box_iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[2.0, 0.0, 3.0, 1.0]]))
        array([[-0.4]])
    """
    return _diou(*_pairwise(a, b))[0]


def paired_distance_box_iou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    """Distance IoU of each box with its partner, ``[N, 4]`` and ``[N, 4]`` -> ``[N]``.

    :func:`distance_box_iou` for the pairs ``(a[i], b[i])``; ``eps`` as in
    :func:`paired_box_iou`.
    """
    return _diou(*_paired(a, b), eps)[0]


def complete_box_iou(a: ArrayT, b: ArrayT) -> ArrayT:
    """Pairwise complete IoU: ``DIoU - alpha * v``, DIoU with an aspect-ratio term.

    ``v = 4 / pi^2 * (arctan(w_a / h_a) - arctan(w_b / h_b))^2`` measures how the aspect
    ratios differ and ``alpha = v / (1 - IoU + v)`` weighs it, more as the boxes overlap
    more (Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for
    Object Detection and Instance Segmentation", 2021). As in the paper and torchvision,
    ``alpha`` is a constant for autograd. A box of zero height has the limit angle
    ``pi / 2`` (torchvision's value, without its NaN gradient) and a point has angle 0.

    Args:
        a: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        b: ``[M, 4]`` of the same type, ``xyxy``.

    Returns:
        ``[N, M]`` CIoU in ``[-1, 1]``, same type.

    Example:
        >>> complete_box_iou(np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 1.0]]))
        array([[0.44675187]])
    """
    return _ciou(*_pairwise(a, b))


def paired_complete_box_iou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    """Complete IoU of each box with its partner, ``[N, 4]`` and ``[N, 4]`` -> ``[N]``.

    :func:`complete_box_iou` for the pairs ``(a[i], b[i])``; ``eps`` as in
    :func:`paired_box_iou`.
    """
    return _ciou(*_paired(a, b), eps)


def nms(boxes: ArrayT, scores: ArrayT, iou_threshold: float) -> ArrayT:
    """Non-maximum suppression (torchvision's kernel).

    Args:
        boxes: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        scores: ``[N]`` scores of the same type.
        iou_threshold: Boxes overlapping a better-scored kept box with IoU above this go.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score, same type as ``boxes``.

    Example:
        >>> boxes = np.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
        >>> nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.5)
        array([0, 2])
    """
    from torchvision.ops import nms as tv_nms

    tboxes, tscores = _nms_inputs(boxes, scores)
    return _like(tv_nms(tboxes, tscores, float(iou_threshold)), boxes)


def batched_nms(boxes: ArrayT, scores: ArrayT, labels: ArrayT, iou_threshold: float) -> ArrayT:
    """Class-aware non-maximum suppression: boxes of different labels never suppress each other.

    Args:
        boxes: ``[N, 4]`` numpy array or torch tensor, ``xyxy``.
        scores: ``[N]`` scores of the same type.
        labels: ``[N]`` integer class labels of the same type.
        iou_threshold: Boxes overlapping a better-scored kept box of the same label with IoU
            above this go.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score, same type as ``boxes``.

    Example:
        >>> boxes = np.array([[0.0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10]])
        >>> batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), 0.5)
        array([0, 1])
    """
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms

    tboxes, tscores = _nms_inputs(boxes, scores)
    tlabels = torch.as_tensor(labels, device=tboxes.device)
    _check_vector(tlabels, len(tboxes), "labels")
    return _like(tv_batched_nms(tboxes, tscores, tlabels, float(iou_threshold)), boxes)


def _check_boxes(boxes: ArrayT, name: str) -> None:
    if len(boxes.shape) != 2 or boxes.shape[1] != 4:
        raise ConfigError(f"boxes must have shape [N, 4], got {list(boxes.shape)}", field=name)


def _check_pair(a: ArrayT, b: ArrayT) -> None:
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        raise ConfigError(
            f"both box sets must be numpy arrays or both torch tensors, got "
            f"{type(a).__name__} and {type(b).__name__}"
        )


def _pairwise(a: ArrayT, b: ArrayT) -> tuple[ArrayT, ArrayT]:
    """``[N, 4]`` and ``[M, 4]`` boxes as ``[N, 1, 4]`` and ``[1, M, 4]``: every pair."""
    _check_pair(a, b)
    return a[:, None], b[None]


def _paired(a: ArrayT, b: ArrayT) -> tuple[ArrayT, ArrayT]:
    """``[N, 4]`` and ``[N, 4]`` boxes, checked: ``a[i]`` goes with ``b[i]``."""
    _check_pair(a, b)
    if a.shape != b.shape:
        raise ConfigError(f"need as many boxes in a as in b, got {len(a)} and {len(b)}")
    return a, b


# The IoU family on boxes that broadcast against each other ([..., 4] -> [...]), written once
# for the pairwise ([N, 1, 4] with [1, M, 4]) and the paired ([N, 4] with [N, 4]) forms.


def _iou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> tuple[ArrayT, ArrayT]:
    """IoU and union area."""
    xp = _namespace(a)
    wh = (xp.minimum(a[..., 2:], b[..., 2:]) - xp.maximum(a[..., :2], b[..., :2])).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a) + box_area(b) - inter
    return _safe_div(inter, union, eps), union


def _enclosing(a: ArrayT, b: ArrayT) -> tuple[ArrayT, ArrayT]:
    """Top-left and bottom-right ``[..., 2]`` corners of the box enclosing each pair."""
    xp = _namespace(a)
    return xp.minimum(a[..., :2], b[..., :2]), xp.maximum(a[..., 2:], b[..., 2:])


def _giou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    iou, union = _iou(a, b, eps)
    lt, rb = _enclosing(a, b)
    wh = (rb - lt).clip(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - _safe_div(enclosing - union, enclosing, eps)


def _diou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> tuple[ArrayT, ArrayT]:
    """DIoU and IoU."""
    iou, _ = _iou(a, b, eps)
    lt, rb = _enclosing(a, b)
    diagonal2 = ((rb - lt) ** 2).sum(-1)
    centre_a = (a[..., :2] + a[..., 2:]) / 2
    centre_b = (b[..., :2] + b[..., 2:]) / 2
    distance2 = ((centre_a - centre_b) ** 2).sum(-1)
    return iou - _safe_div(distance2, diagonal2, eps), iou


def _ciou(a: ArrayT, b: ArrayT, eps: float = 0.0) -> ArrayT:
    diou, iou = _diou(a, b, eps)
    v = 4 / math.pi**2 * (_aspect_angle(a) - _aspect_angle(b)) ** 2
    alpha = _safe_div(v, 1 - iou + v, eps)
    return diou - (alpha if isinstance(alpha, np.ndarray) else alpha.detach()) * v


def _aspect_angle(boxes: ArrayT) -> ArrayT:
    """``arctan(w / h)`` as ``arctan2(w, h)``: finite for ``h = 0``, and 0 for a point."""
    xp = _namespace(boxes)
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    return xp.arctan2(w, xp.where((w == 0) & (h == 0), 1, h))


def _safe_div(num: ArrayT, den: ArrayT, eps: float = 0.0) -> ArrayT:
    """``num / (den + eps)``, and 0 with no gradient where ``den <= 0`` (degenerate boxes).

    In the IoU family ``num`` is then 0 too; masking rather than relying on ``eps`` keeps
    the gradient of two identical zero-area boxes at 0 instead of ``1 / eps``.
    """
    xp = _namespace(den)
    positive = den > 0
    return xp.where(positive, num / (xp.where(positive, den, 1) + eps), 0)


def _namespace(like: ArrayT) -> ModuleType:
    """The array library (numpy or torch) that ``like`` belongs to."""
    if isinstance(like, np.ndarray):
        return np
    import torch

    return torch


def _nms_inputs(boxes: ArrayT, scores: ArrayT) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and scores as torch tensors of one floating dtype and device, shapes checked."""
    import torch

    tboxes = torch.as_tensor(boxes)
    _check_boxes(tboxes, "boxes")
    if not tboxes.is_floating_point():
        tboxes = tboxes.float()
    tscores = torch.as_tensor(scores, dtype=tboxes.dtype, device=tboxes.device)
    _check_vector(tscores, len(tboxes), "scores")
    return tboxes, tscores


def _check_vector(values: torch.Tensor, length: int, name: str) -> None:
    if values.shape != (length,):
        raise ConfigError(
            f"{name} must have shape [{length}], got {list(values.shape)}", field=name
        )


def _like(indices: torch.Tensor, like: ArrayT) -> ArrayT:
    """Return torch ``indices`` as numpy when the caller passed numpy boxes."""
    return indices.cpu().numpy() if isinstance(like, np.ndarray) else indices
