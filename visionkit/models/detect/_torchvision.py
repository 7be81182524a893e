"""Torchvision's detectors as ``detect`` registry entries: one keyword-only builder each.

Faster R-CNN (ResNet-50 FPN v1/v2, MobileNetV3-Large FPN at 320 px and full size),
RetinaNet (v1/v2), FCOS, SSDlite and Mask R-CNN (v1/v2), every one a
:class:`~visionkit.models.detect._torchvision_adapter.TorchvisionDetector`: class indices
``0..K-1``, resized inside to ``image_size``, post-processed with the detector's
:class:`~visionkit.models.detect.Thresholds`. ``weights=None`` never downloads (not the
backbone either); ``weights="DEFAULT"`` is torchvision's COCO checkpoint, read from the
torch hub cache or fetched unless ``VISIONKIT_OFFLINE=1``.

Example:
    >>> model = create_model("fasterrcnn_resnet50_fpn", num_classes=3, weights="DEFAULT")
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visionkit.models.detect._torchvision_adapter import (
    TorchvisionDetector,
    build_torchvision_detector,
)
from visionkit.models.detect._torchvision_weights import PRETRAINED
from visionkit.models.registry import BuilderT, register_model

__all__ = [
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "ssdlite320_mobilenet_v3_large",
]


def _register(name: str, description: str) -> Callable[[BuilderT], BuilderT]:
    """Register a torchvision detector for task ``detect`` with its COCO default weights."""
    return register_model(
        name, task="detect", description=description, default_weights=PRETRAINED[name].weights
    )


@_register(
    "fasterrcnn_resnet50_fpn",
    "Faster R-CNN, ResNet-50 FPN (torchvision), 41.8 M parameters, COCO box mAP 37.0",
)
def fasterrcnn_resnet50_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["fasterrcnn_resnet50_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Faster R-CNN (Ren et al. 2015) on a ResNet-50 FPN backbone (Lin et al. 2017).
    Args:
        num_classes: ``K`` object classes (background not counted); ``None`` keeps the
            weights' count (90 for COCO and for random init).
        weights: ``None`` (random init, no downloads), a torchvision enum name
            (``"DEFAULT"``, ``"COCO_V1"``) or a visionkit weights file of this model.
        image_size: The longer side that images are resized to inside the model.
        trainable_backbone_layers: Backbone stages, from the output end, that train;
            ``None``: torchvision's default (3) when starting from pretrained weights,
            all otherwise.
        weights_backbone: Enum name of the backbone classifier's ImageNet weights
            (``"IMAGENET1K_V1"``), loaded when ``weights`` is ``None``.
        frozen_batchnorm: Freeze the backbone's BatchNorm layers; ``None``: as torchvision
            (frozen when starting from pretrained weights, except the v2 models).
        **options: Passed to torchvision's model (``rpn_batch_size_per_image``,
            ``box_batch_size_per_image``...).

    Returns:
        The detector, in train mode.

    Raises:
        ConfigError: An option this model does not take, or one out of range.
        WeightsError: The weights cannot be found (offline: the message names the file to
            place in the torch hub cache), read or fitted.
    """
    return build_torchvision_detector(
        "fasterrcnn_resnet50_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "fasterrcnn_resnet50_fpn_v2",
    "Faster R-CNN v2, ResNet-50 FPN (torchvision), 43.7 M parameters, COCO box mAP 46.7",
)
def fasterrcnn_resnet50_fpn_v2(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["fasterrcnn_resnet50_fpn_v2"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Faster R-CNN with the improved recipe of Li et al. 2021 (BatchNorm heads, 4-conv box head).

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "fasterrcnn_resnet50_fpn_v2",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "Faster R-CNN, MobileNetV3-Large FPN, 320 px (torchvision), 19.4 M parameters, COCO mAP 22.8",
)
def fasterrcnn_mobilenet_v3_large_320_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["fasterrcnn_mobilenet_v3_large_320_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Faster R-CNN on a MobileNetV3-Large FPN backbone, tuned for 320-pixel inputs.

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "fasterrcnn_mobilenet_v3_large_fpn",
    "Faster R-CNN, MobileNetV3-Large FPN (torchvision), 19.4 M parameters, COCO box mAP 32.8",
)
def fasterrcnn_mobilenet_v3_large_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["fasterrcnn_mobilenet_v3_large_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Faster R-CNN on a MobileNetV3-Large FPN backbone (Howard et al. 2019).

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "fasterrcnn_mobilenet_v3_large_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "retinanet_resnet50_fpn",
    "RetinaNet, ResNet-50 FPN (torchvision), 34.0 M parameters, COCO box mAP 36.4",
)
def retinanet_resnet50_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["retinanet_resnet50_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """RetinaNet (Lin et al. 2017): one-stage, focal loss, 9 anchors per location.

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "retinanet_resnet50_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "retinanet_resnet50_fpn_v2",
    "RetinaNet v2, ResNet-50 FPN (torchvision), 38.2 M parameters, COCO box mAP 41.5",
)
def retinanet_resnet50_fpn_v2(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["retinanet_resnet50_fpn_v2"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """RetinaNet with GroupNorm heads and GIoU box loss (torchvision's improved recipe).

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "retinanet_resnet50_fpn_v2",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "fcos_resnet50_fpn",
    "FCOS, ResNet-50 FPN (torchvision), 32.3 M parameters, COCO box mAP 39.2",
)
def fcos_resnet50_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["fcos_resnet50_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """FCOS (Tian et al. 2019): anchor-free, one prediction per location with centreness.

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "fcos_resnet50_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "ssdlite320_mobilenet_v3_large",
    "SSDlite, MobileNetV3-Large at 320 px (torchvision), 3.4 M parameters, COCO box mAP 21.3",
)
def ssdlite320_mobilenet_v3_large(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["ssdlite320_mobilenet_v3_large"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """SSDlite (Sandler et al. 2018) on MobileNetV3-Large (reduced tail); resizes to a square.

    Args: as :func:`fasterrcnn_resnet50_fpn`; the whole backbone trains with live
    BatchNorm (torchvision's recipe), so ``trainable_backbone_layers``,
    ``weights_backbone`` and ``frozen_batchnorm=True`` are refused, and ``options``
    go to its MobileNetV3 backbone.
    """
    return build_torchvision_detector(
        "ssdlite320_mobilenet_v3_large",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "maskrcnn_resnet50_fpn",
    "Mask R-CNN, ResNet-50 FPN (torchvision), 44.4 M parameters, COCO box/mask mAP 37.9/34.6",
)
def maskrcnn_resnet50_fpn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["maskrcnn_resnet50_fpn"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Mask R-CNN (He et al. 2017): Faster R-CNN plus a mask head; eval output adds ``masks``.

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "maskrcnn_resnet50_fpn",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )


@_register(
    "maskrcnn_resnet50_fpn_v2",
    "Mask R-CNN v2, ResNet-50 FPN (torchvision), 46.4 M parameters, COCO box/mask mAP 47.4/41.8",
)
def maskrcnn_resnet50_fpn_v2(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["maskrcnn_resnet50_fpn_v2"].image_size,
    trainable_backbone_layers: int | None = None,
    weights_backbone: str | None = None,
    frozen_batchnorm: bool | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Mask R-CNN with the improved recipe of Li et al. 2021; eval output adds ``masks``.

    Args: as :func:`fasterrcnn_resnet50_fpn`.
    """
    return build_torchvision_detector(
        "maskrcnn_resnet50_fpn_v2",
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        trainable_backbone_layers=trainable_backbone_layers,
        weights_backbone=weights_backbone,
        frozen_batchnorm=frozen_batchnorm,
        options=options,
    )
