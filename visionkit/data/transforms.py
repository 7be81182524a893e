"""Training and evaluation pipelines built from ``torchvision.transforms.v2``.

The datasets of :mod:`visionkit.data.datasets` return ``tv_tensors``, so every geometric
step here (flip, resize, crop, pad) moves boxes and masks with the pixels; nothing
transforms coordinates by hand. Masks are resized with nearest-neighbour sampling, which
keeps class indices intact.

Detection and segmentation make ``imgsz`` x ``imgsz`` images, so batches stack, and train
with large-scale jitter (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation
Method for Instance Segmentation", CVPR 2021): fit the image to ``imgsz``, rescale it by a
random factor, then crop or pad back to ``imgsz``. Evaluation fits the longer side to
``imgsz`` and pads the bottom and right edges only, so a prediction maps back to the
original image by one division by the resize factor.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf
from torchvision.transforms.v2.functional._geometry import (
    _compute_resized_output_size as _resized_size,  # what v2.Resize computes; tested
)

from visionkit.data.records import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet on the 0-1 scale, which pretrained backbones expect."""

IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet on the 0-1 scale."""

PAD_VALUE = 114
"""``uint8`` grey for padded image pixels: near the ImageNet mean (as in YOLO letterboxing),
so padding is close to 0 after normalisation and carries little signal."""

SCALE_RANGE = (0.5, 1.5)
"""Random rescale factors of the training scale jitter, relative to fitting ``imgsz``."""

EVAL_CROP_RATIO = 0.875
"""Classification evaluation resizes to ``imgsz / 0.875`` and centre-crops ``imgsz`` (the
224-of-256 protocol of the ResNet and torchvision reference evaluations)."""

__all__ = [
    "EVAL_CROP_RATIO",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PAD_VALUE",
    "SCALE_RANGE",
    "PadBottomRight",
    "classification_transforms",
    "detection_image_transform",
    "detection_transforms",
    "eval_scale",
    "normalised_float",
    "segmentation_transforms",
]


class PadBottomRight(v2.Transform):
    """Pad the bottom and right edges up to ``size`` x ``size`` (no-op where already as large).

    Boxes do not move; their canvas grows. Masks are padded with ``mask_fill``.

    Args:
        size: Output height and width, at least the input's.
        fill: Value of padded image pixels.
        mask_fill: Value of padded mask pixels: 0 (no object) for instance masks,
            :data:`~visionkit.data.records.IGNORE_INDEX` for semantic masks.
    """

    def __init__(self, size: int, fill: float = PAD_VALUE, mask_fill: int = 0) -> None:
        super().__init__()
        self.size = size
        self.fill = fill
        self.mask_fill = mask_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        return {"padding": [0, 0, max(0, self.size - width), max(0, self.size - height)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return tvf.pad(inpt, padding=params["padding"], fill=fill)


def detection_transforms(
    train: bool,
    imgsz: int,
    *,
    flip: float = 0.5,
    scale: tuple[float, float] = SCALE_RANGE,
    colour: bool = True,
) -> v2.Compose:
    """Detection pipeline for :class:`~visionkit.data.datasets.DetectionDataset` samples.

    Train: horizontal flip, scale jitter (:data:`SCALE_RANGE` by default), colour jitter,
    then crop or pad to ``imgsz`` x ``imgsz``. Short training runs learn more from lighter
    augmentation (``scale=(1, 1), colour=False``); long ones generalise better with it.

    Eval: longer side resized to ``imgsz``, bottom and right padded to ``imgsz`` x ``imgsz``.
    Both end with ``SanitizeBoundingBoxes`` (boxes that became smaller than 1 px are dropped
    with their labels, masks and crowd flags) and a conversion of the image to ``float32``
    in 0-1. There is no mean/std normalisation:
    torchvision detectors normalise inside the model.

    Args:
        train: Random augmentation (True) or deterministic evaluation (False).
        imgsz: Side of the square output image in pixels.
        flip: Probability of a horizontal flip (train only).
        scale: Range of the random rescale factor after fitting ``imgsz`` (train only).
        colour: Jitter brightness, contrast, saturation and hue (train only).

    Returns:
        A callable ``(image, target) -> (image, target)``; ``image`` becomes ``float32``
        ``[3, imgsz, imgsz]``, instance masks stay ``uint8``.

    Example:
        >>> image, target = detection_transforms(True, 640)(image, target)  # doctest: +SKIP
    """
    steps = _train_geometry(imgsz, 0, flip, scale, colour) if train else _eval_geometry(imgsz, 0)
    return v2.Compose(
        [
            v2.ToImage(),
            *steps,
            v2.SanitizeBoundingBoxes(labels_getter=_labels_and_crowd_flags),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def detection_image_transform(imgsz: int) -> v2.Compose:
    """The evaluation pipeline of :func:`detection_transforms` for an image without
    targets (prediction): the same resize, padding and conversion, so the pixels are the
    same, and :func:`eval_scale` maps detections back.

    Returns:
        A callable ``uint8 [3, H, W] -> float32 [3, imgsz, imgsz]`` in 0-1.
    """
    return v2.Compose(
        [v2.ToImage(), *_eval_geometry(imgsz, 0), v2.ToDtype(torch.float32, scale=True)]
    )


def eval_scale(height: int, width: int, imgsz: int) -> tuple[float, float]:
    """The factors by which the evaluation pipeline scales an image's ``y`` and ``x``.

    :func:`detection_transforms` with ``train=False`` resizes the longer side to ``imgsz``
    (torchvision rounds the shorter side to whole pixels, so the two factors differ
    slightly) and pads without moving anything: dividing a prediction's ``y`` and ``x`` by
    these maps it back to the original image exactly.

    Args:
        height: Image height as read, in pixels.
        width: Image width as read, in pixels.
        imgsz: The pipeline's output side.

    Returns:
        ``(sy, sx)``: output pixels per input pixel, vertically and horizontally.
    """
    new_height, new_width = _resized_size((height, width), size=None, max_size=imgsz)
    return new_height / height, new_width / width


def segmentation_transforms(
    train: bool,
    imgsz: int,
    *,
    flip: float = 0.5,
    scale: tuple[float, float] = SCALE_RANGE,
    colour: bool = True,
    normalise: bool = True,
) -> v2.Compose:
    """Segmentation pipeline for :class:`~visionkit.data.datasets.SegmentationDataset` samples.

    The geometry of :func:`detection_transforms`, with the same augmentation options;
    padded mask pixels get :data:`~visionkit.data.records.IGNORE_INDEX` so they count in no
    loss. The image is normalised with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`, as
    torchvision's segmentation models expect. Minutes-long runs from scratch learn more
    with flips only (``scale=(1, 1), colour=False``); scale and colour jitter pay off in
    longer ones.

    Args:
        train: Random augmentation (True) or deterministic evaluation (False).
        imgsz: Side of the square output in pixels.
        flip: Probability of a horizontal flip (train only).
        scale: Range of the random rescale factor after fitting ``imgsz`` (train only).
        colour: Jitter brightness, contrast, saturation and hue (train only).
        normalise: End with :func:`normalised_float`; False leaves the image ``uint8``
            for a step that comes before it (see :class:`~visionkit.data.mosaic.Mosaic`'s
            ``transforms``).

    Returns:
        A callable ``(image, mask) -> (image, mask)``: ``float32`` (``uint8`` without
        ``normalise``) ``[3, imgsz, imgsz]`` and a mask ``[imgsz, imgsz]`` of the input's
        dtype.
    """
    if train:
        steps = _train_geometry(imgsz, IGNORE_INDEX, flip, scale, colour)
    else:
        steps = _eval_geometry(imgsz, IGNORE_INDEX)
    return v2.Compose([v2.ToImage(), *steps, *(_to_normalised_float() if normalise else [])])


def normalised_float() -> v2.Compose:
    """The last steps of :func:`segmentation_transforms`: a ``uint8`` image to ``float32``
    0-1, normalised with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`; masks untouched."""
    return v2.Compose(_to_normalised_float())


def classification_transforms(
    train: bool,
    imgsz: int,
    *,
    flip: float = 0.5,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    colour: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> v2.Compose:
    """Classification pipeline for :class:`~visionkit.data.datasets.ClassificationDataset`.

    Train: random resized crop to ``imgsz`` keeping ``crop_scale`` of the area, horizontal
    flip with probability ``flip``, colour jitter. Eval: resize the shorter side to
    ``imgsz / EVAL_CROP_RATIO`` and centre-crop ``imgsz``. Both normalise with ``mean`` and
    ``std``. The defaults are torchvision's ImageNet recipe; images whose meaning a flip or
    a small crop changes (digits, text) want ``flip=0`` and ``crop_scale`` near 1.

    Args:
        train: Random augmentation (True) or deterministic evaluation (False).
        imgsz: Side of the square output in pixels.
        flip: Probability of a horizontal flip (train only).
        crop_scale: Range of the crop's area as a fraction of the image's (train only).
        colour: Jitter brightness, contrast, saturation and hue (train only).
        mean: Per-channel RGB mean on the 0-1 scale that the model expects.
        std: Per-channel RGB standard deviation on the 0-1 scale.

    Returns:
        A callable ``image -> image`` giving ``float32`` ``[3, imgsz, imgsz]``.
    """
    if train:
        steps = [v2.RandomResizedCrop(imgsz, scale=crop_scale), v2.RandomHorizontalFlip(flip)]
        steps += [_colour_jitter()] if colour else []
    else:
        steps = [v2.Resize(round(imgsz / EVAL_CROP_RATIO)), v2.CenterCrop(imgsz)]
    return v2.Compose([v2.ToImage(), *steps, *_to_normalised_float(mean, std)])


def _colour_jitter() -> v2.ColorJitter:
    return v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02)


def _train_geometry(
    imgsz: int, mask_fill: int, flip: float, scale: tuple[float, float], colour: bool
) -> list[v2.Transform]:
    """Flip, large-scale jitter, colour jitter, then crop or pad to ``imgsz`` x ``imgsz``."""
    return [
        v2.RandomHorizontalFlip(flip),
        v2.ScaleJitter(target_size=(imgsz, imgsz), scale_range=scale),
        *([_colour_jitter()] if colour else []),
        v2.RandomCrop(
            imgsz, pad_if_needed=True, fill={tv_tensors.Mask: mask_fill, "others": PAD_VALUE}
        ),
    ]


def _eval_geometry(imgsz: int, mask_fill: int) -> list[v2.Transform]:
    """Longer side to ``imgsz``, then bottom and right padded to ``imgsz`` x ``imgsz``."""
    return [v2.Resize(size=None, max_size=imgsz), PadBottomRight(imgsz, mask_fill=mask_fill)]


def _to_normalised_float(
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> list[v2.Transform]:
    """Image to ``float32`` 0-1, then normalisation (ImageNet's by default); masks untouched."""
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _labels_and_crowd_flags(inputs: Any) -> tuple[torch.Tensor, ...]:
    """The per-box tensors of a detection target that must be dropped with their boxes."""
    _, target = inputs
    return tuple(target[key] for key in ("labels", "iscrowd", "area") if key in target)
