"""The patch classifier of the historical detectors, and what they share around it.

The sliding-window detector and R-CNN both classify fixed-size patches warped out of the
image into ``K`` object classes plus background (index ``K``). :class:`PatchClassifier`
is a small CNN with *valid* (unpadded) convolutions whose classifier is itself a
convolution over its last feature map, so on a ``P x P`` patch it gives one prediction and
on a larger image a dense map of predictions, one for every ``P x P`` window at a stride
of 4 pixels, exactly equal to cropping each window (OverFeat, Sermanet et al. 2014).
``cnn-small`` does not allow that: its padded convolutions and global pooling see past a
window's edges.

Also here: :func:`crop_patches` (crop and warp boxes with ``roi_align``),
:func:`select_detections` (class-wise thresholds, NMS and the detection limit of both
detectors) and :func:`build_detector` (their weights flow).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models.detect._detector import Detector, Thresholds
from visionkit.models.weights import apply_state_dict, read_state_dict, resolve_weights
from visionkit.ops.boxes import batched_nms, clip_boxes

__all__ = [
    "DEFAULT_NUM_CLASSES",
    "PatchClassifier",
    "build_detector",
    "crop_patches",
    "normalize",
    "plain_target",
    "scale_boxes",
    "select_detections",
]

DEFAULT_NUM_CLASSES = 80
"""Object classes without weights and without ``num_classes``: COCO's 80."""

STRIDE = 4
"""Pixels between neighbouring windows of a dense map, in the patch's own scale."""

_PRE_NMS_TOP_N = 2000  # NMS costs the square of its input: keep the best candidates only


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Unpadded 3x3 convolution (He-initialised), batch norm, ReLU: the side shrinks by 2."""
    conv = nn.Conv2d(in_channels, out_channels, 3, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class PatchClassifier(nn.Module):
    """Valid-convolution CNN: ``P x P`` patches to class logits (and box deltas).

    Two conv pairs each followed by 2x2 max pooling, one more conv, then a ``k x k``
    convolution (``k = P / 4 - 5``, a fully connected layer over the last map) and 1x1
    output convolutions. Any input of side ``>= P`` gives a ``[B, ., h, w]`` map whose cell
    ``(i, j)`` is the prediction for the window at ``(4 j, 4 i)``; a ``P x P`` input gives
    ``h = w = 1``.

    Args:
        num_classes: ``K``; the classifier has ``K + 1`` outputs, background last.
        patch_size: ``P``, a multiple of 4, at least 24.
        width: Channels of the first convs (then 2x, 4x, and 8x in the fully connected one).
        box_regression: Add class-specific box deltas (``4 K`` outputs, R-CNN's regressor).

    Raises:
        ConfigError: ``patch_size`` or ``width`` is invalid.
    """

    def __init__(
        self, num_classes: int, patch_size: int, width: int, box_regression: bool = False
    ) -> None:
        super().__init__()
        if patch_size < 24 or patch_size % STRIDE:
            raise ConfigError(
                f"must be a multiple of 4 and at least 24, got {patch_size}", field="patch_size"
            )
        if width < 1:
            raise ConfigError(f"must be positive, got {width}", field="width")
        self.patch_size = patch_size
        self.features = nn.Sequential(
            _conv_bn_relu(3, width),
            _conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width),
            _conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),
            _conv_bn_relu(2 * width, 4 * width),
            nn.Conv2d(4 * width, 8 * width, patch_size // STRIDE - 5),
            nn.ReLU(inplace=True),
        )
        self.cls_head = nn.Conv2d(8 * width, num_classes + 1, 1)
        self.box_head = nn.Conv2d(8 * width, 4 * num_classes, 1) if box_regression else None
        if self.box_head is not None:  # small initial deltas: boxes start at the proposals
            nn.init.normal_(self.box_head.weight, std=0.001)
            nn.init.zeros_(self.box_head.bias)

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predictions for every ``P x P`` window of normalised ``[B, 3, H, W]`` images.

        Returns:
            Logits ``[B, K + 1, h, w]`` and box deltas ``[B, 4 K, h, w]`` (``None``
            without box regression), ``h = (H - P) // 4 + 1`` and likewise ``w``.
        """
        features = self.features(images)
        deltas = None if self.box_head is None else self.box_head(features)
        return self.cls_head(features), deltas

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[N, K + 1]`` and deltas ``[N, 4 K]`` (or ``None``) of ``[N, 3, P, P]``."""
        if patches.shape[-2:] != (self.patch_size, self.patch_size):
            raise ConfigError(
                f"patches must be {self.patch_size}x{self.patch_size}, got "
                f"{tuple(patches.shape[-2:])}",
                field="patches",
            )
        logits, deltas = self.dense(patches)
        return logits.flatten(1), None if deltas is None else deltas.flatten(1)


def normalize(image: torch.Tensor, detector: Detector) -> torch.Tensor:
    """``[3, H, W]`` 0-1 image normalised with the detector's mean and std."""
    mean = torch.tensor(detector.config.mean, dtype=image.dtype, device=image.device)
    std = torch.tensor(detector.config.std, dtype=image.dtype, device=image.device)
    return (image - mean[:, None, None]) / std[:, None, None]


def plain_target(target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A target's ``float32`` ``[N, 4]`` boxes and ``int64`` ``[N]`` labels, as plain CPU tensors.

    Training samples are drawn on the CPU; ``tv_tensors.BoundingBoxes`` become plain
    tensors so that box arithmetic gives plain tensors too.
    """
    boxes = target["boxes"].as_subclass(torch.Tensor).detach().cpu().float().reshape(-1, 4)
    return boxes, target["labels"].as_subclass(torch.Tensor).cpu().long().reshape(-1)


def scale_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes with width and height multiplied by ``factor``, centres kept."""
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * factor / 2
    return torch.cat([centre - half, centre + half], 1)


def crop_patches(
    image: torch.Tensor, boxes: torch.Tensor, patch_size: int, context: float = 0.0
) -> torch.Tensor:
    """Crop ``boxes`` out of one image, with a margin of context, and warp each to a patch.

    ``torchvision.ops.roi_align`` with continuous coordinates (``aligned=True``) and an
    adaptive number of samples per output pixel, so a large box is averaged down rather
    than aliased and the crop is differentiable in the image.

    Args:
        image: ``[3, H, W]`` image (normalised or not).
        boxes: ``float32`` ``[N, 4]`` xyxy pixels; parts outside the image read zeros.
        patch_size: Output side ``P``.
        context: Margin added on every side, as a fraction of the box's width and height
            (R-CNN's context padding: the box fills ``1 / (1 + 2 context)`` of the patch).

    Returns:
        ``[N, 3, P, P]`` patches.
    """
    from torchvision.ops import roi_align

    rois = scale_boxes(boxes.to(image.dtype), 1 + 2 * context)
    return roi_align(image[None], [rois], patch_size, sampling_ratio=-1, aligned=True)


def select_detections(
    boxes: torch.Tensor, scores: torch.Tensor, thresholds: Thresholds, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Turn per-box class scores into one image's detections (the contract's eval output).

    Every (box, class) pair scoring at least ``thresholds.conf`` is a candidate; the best
    candidates go through class-wise NMS at ``thresholds.iou`` and the ``max_det`` best
    survivors are returned.

    Args:
        boxes: ``[N, 4]`` xyxy boxes shared by all classes, or ``[N, K, 4]`` per class.
        scores: ``[N, K]`` class probabilities (background column removed).
        thresholds: The detector's post-processing settings.
        size: ``(height, width)`` of the image, to clip boxes to.

    Returns:
        ``{"boxes" [M, 4], "scores" [M], "labels" int64 [M]}``, best first.
    """
    num_classes = scores.shape[1]
    if boxes.dim() == 2:
        boxes = boxes[:, None].expand(-1, num_classes, -1)
    boxes = clip_boxes(boxes.reshape(-1, 4), *size)
    labels = torch.arange(num_classes, device=scores.device).repeat(scores.shape[0])
    scores = scores.reshape(-1)
    keep = torch.nonzero(scores >= thresholds.conf).squeeze(1)
    keep = keep[scores[keep].topk(min(len(keep), _PRE_NMS_TOP_N)).indices]
    sides = boxes[keep, 2:] - boxes[keep, :2]
    keep = keep[(sides > 0).all(dim=1)]
    keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], thresholds.iou)]
    keep = keep[: thresholds.max_det]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def build_detector(
    make: Callable[[int], Detector], *, name: str, weights: str | None, num_classes: int | None
) -> Detector:
    """Build a patch-classifier detector and load a visionkit weights file into it.

    Args:
        make: Builds a randomly initialised detector for ``K`` classes.
        name: Registry name, for messages.
        weights: ``None`` or a visionkit weights file or checkpoint of this model.
        num_classes: ``K``; ``None`` keeps the file's (or :data:`DEFAULT_NUM_CLASSES`).

    Returns:
        The detector.

    Raises:
        WeightsError: ``weights`` is not a file (these models have no pretrained
            weights), cannot be read, does not fit, or was trained on another class count
            than ``num_classes``.
    """
    source = resolve_weights(weights, model_name=name)
    if source is None:
        return make(num_classes or DEFAULT_NUM_CLASSES)
    if source.kind != "file":
        raise WeightsError(
            f"{name} has no pretrained weights; pass a visionkit weights file or weights=None",
            file=source.location,
            field="weights",
        )
    state = read_state_dict(source)
    rows = state.get("classifier.cls_head.weight")
    if rows is None:
        raise WeightsError(
            f"no 'classifier.cls_head.weight': not the weights of a {name} model",
            file=source.location,
        )
    file_classes = rows.shape[0] - 1
    if num_classes is not None and num_classes != file_classes:
        raise WeightsError(
            f"the weights detect {file_classes} classes, not num_classes={num_classes}",
            file=source.location,
            field="num_classes",
        )
    model = make(file_classes)
    apply_state_dict(model, state, file=source.location)
    return model
