"""Pretrained settings of the torchvision detectors, kept apart from the adapter code.

Every entry names the torchvision enum member that ``weights="DEFAULT"`` stands for (COCO,
resolved through ``torchvision.models.get_model_weights``), the input side the model is
built for by default, the classifier whose ImageNet weights ``weights_backbone`` names,
and how torchvision lays out a backbone that starts from pretrained weights: its
BatchNorm layers frozen or not, and how many backbone stages train by default.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRETRAINED", "DetectionPretrainedCfg"]


@dataclass(frozen=True)
class DetectionPretrainedCfg:
    """The pretrained weights of one torchvision detector and the layout they come with.

    Attributes:
        weights: The enum member name that ``weights="DEFAULT"`` stands for.
        image_size: Default input side in pixels (the longer side after resizing).
        backbone: The torchvision classifier (``"resnet50"``, ``"mobilenet_v3_large"``)
            whose weights enum ``weights_backbone`` names; ``None`` when the backbone cannot
            start from classifier weights alone (SSDlite's COCO backbone has MobileNetV3's
            reduced tail, which ImageNet weights do not fit).
        frozen_batchnorm: Whether torchvision freezes the backbone's BatchNorm layers
            (``FrozenBatchNorm2d``) when the model starts from pretrained weights.
        trainable_layers: Backbone stages, counted from the output end, that torchvision
            trains by default when the model starts from pretrained weights (SSDlite,
            without ``backbone``, trains all of them).
    """

    weights: str
    image_size: int
    backbone: str | None
    frozen_batchnorm: bool = True
    trainable_layers: int = 3


# Native sides are torchvision's own (320 for the 320 models); 640 elsewhere keeps small
# images from being enlarged to torchvision's 800-1333 pixels.
_SIDE = 640

PRETRAINED: dict[str, DetectionPretrainedCfg] = {
    "fasterrcnn_resnet50_fpn": DetectionPretrainedCfg("DEFAULT", _SIDE, "resnet50"),
    "fasterrcnn_resnet50_fpn_v2": DetectionPretrainedCfg(
        "DEFAULT", _SIDE, "resnet50", frozen_batchnorm=False
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": DetectionPretrainedCfg(
        "DEFAULT", 320, "mobilenet_v3_large"
    ),
    "fasterrcnn_mobilenet_v3_large_fpn": DetectionPretrainedCfg(
        "DEFAULT", _SIDE, "mobilenet_v3_large"
    ),
    "retinanet_resnet50_fpn": DetectionPretrainedCfg("DEFAULT", _SIDE, "resnet50"),
    "retinanet_resnet50_fpn_v2": DetectionPretrainedCfg(
        "DEFAULT", _SIDE, "resnet50", frozen_batchnorm=False
    ),
    "fcos_resnet50_fpn": DetectionPretrainedCfg("DEFAULT", _SIDE, "resnet50"),
    "ssdlite320_mobilenet_v3_large": DetectionPretrainedCfg(
        "DEFAULT", 320, None, frozen_batchnorm=False
    ),
    "maskrcnn_resnet50_fpn": DetectionPretrainedCfg("DEFAULT", _SIDE, "resnet50"),
    "maskrcnn_resnet50_fpn_v2": DetectionPretrainedCfg(
        "DEFAULT", _SIDE, "resnet50", frozen_batchnorm=False
    ),
}
