"""Torchvision's semantic segmenters as ``segment`` registry entries: FCN, DeepLabv3, LR-ASPP.

Each entry is torchvision's own module inside a :class:`TorchvisionSegmenter`, whose
forward returns the model's ``"out"`` logits (already at the input size). The auxiliary
FCN head that torchvision trains on the stride-16 features is not built: the segmenter
contract has one output, so the head would never receive a gradient; its tensors in
torchvision's checkpoints are skipped.

Weights load through :mod:`visionkit.models.weights`, never torchvision's own downloader:
``weights="DEFAULT"`` or ``"COCO_WITH_VOC_LABELS_V1"`` is torchvision's checkpoint trained
on the COCO images of the 20 PASCAL VOC classes (21 classes with background), read from the
torch hub cache or fetched unless ``VISIONKIT_OFFLINE=1`` (then one
:class:`~visionkit.errors.WeightsError` names the file to place where). With another
``num_classes`` the final 1x1 classifier(s) start afresh, torchvision's fine-tuning recipe.
``weights_backbone`` loads the ImageNet weights of the backbone's classifier instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visionkit.errors import WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.segment._backbones import check_backbone_weights
from visionkit.models.segment._build import (
    DEFAULT_NUM_CLASSES,
    Variant,
    register_variants,
    segment_config,
)
from visionkit.models.segment._segmenter import SemanticSegmenter
from visionkit.models.weights import (
    WeightsSource,
    apply_state_dict,
    load_weights,
    read_state_dict,
    resolve_torchvision_weights,
)

__all__ = ["TorchvisionSegmenter", "build_torchvision_segmenter"]

_SIDE = 520  # torchvision's evaluation resize of these weights
_DEFAULT_WEIGHTS = "COCO_WITH_VOC_LABELS_V1"
_RESNET_DILATION = {"replace_stride_with_dilation": [False, True, True]}  # output stride 8
_MOBILENET_DILATION = {"dilated": True}  # output stride 16


@dataclass(frozen=True)
class _Arch(Variant):
    """One torchvision segmenter: its registry entry, and its backbone classifier built as
    the segmenter builds it.

    Attributes:
        backbone: The torchvision classifier whose weights ``weights_backbone`` names.
        dilation: Options that build that classifier with the segmenter's dilation.
        classes_key: A key of the wrapped model's state dict whose first dimension is ``C``.
    """

    backbone: str
    dilation: dict[str, Any]
    classes_key: str = "net.classifier.4.weight"


_ARCHS = {
    "fcn_resnet50": _Arch(
        "resnet50",
        _RESNET_DILATION,
        description="FCN, ResNet-50 (torchvision), 33.0 M parameters, COCO-VOC mIoU 60.5",
        summary="FCN (Long et al. 2015) on a dilated ResNet-50 (output stride 8), torchvision's.",
        default_weights=_DEFAULT_WEIGHTS,
    ),
    "fcn_resnet101": _Arch(
        "resnet101",
        _RESNET_DILATION,
        description="FCN, ResNet-101 (torchvision), 51.9 M parameters, COCO-VOC mIoU 63.7",
        summary="FCN on a dilated ResNet-101 (output stride 8).",
        default_weights=_DEFAULT_WEIGHTS,
    ),
    "deeplabv3_resnet50": _Arch(
        "resnet50",
        _RESNET_DILATION,
        description="DeepLabv3, ResNet-50 (torchvision), 39.6 M parameters, COCO-VOC mIoU 66.4",
        summary="DeepLabv3 (Chen et al. 2017): ASPP on a dilated ResNet-50 (output stride 8).",
        default_weights=_DEFAULT_WEIGHTS,
    ),
    "deeplabv3_resnet101": _Arch(
        "resnet101",
        _RESNET_DILATION,
        description="DeepLabv3, ResNet-101 (torchvision), 58.6 M parameters, COCO-VOC mIoU 67.4",
        summary="DeepLabv3 on a dilated ResNet-101 (output stride 8).",
        default_weights=_DEFAULT_WEIGHTS,
    ),
    "deeplabv3_mobilenet_v3_large": _Arch(
        "mobilenet_v3_large",
        _MOBILENET_DILATION,
        description="DeepLabv3, MobileNetV3-Large (torchvision), 11.0 M parameters, "
        "COCO-VOC mIoU 60.3",
        summary="DeepLabv3 on MobileNetV3-Large, its last stage dilated (output stride 16).",
        default_weights=_DEFAULT_WEIGHTS,
    ),
    "lraspp_mobilenet_v3_large": _Arch(
        "mobilenet_v3_large",
        _MOBILENET_DILATION,
        "net.classifier.high_classifier.weight",
        description="LR-ASPP, MobileNetV3-Large (torchvision), 3.2 M parameters, "
        "COCO-VOC mIoU 57.9",
        summary="Lite R-ASPP (Howard et al. 2019): stride-8 and stride-16 branches on "
        "MobileNetV3-Large.",
        default_weights=_DEFAULT_WEIGHTS,
    ),
}


class TorchvisionSegmenter(SemanticSegmenter):
    """A torchvision segmentation model behind the :class:`SemanticSegmenter` contract.

    Args:
        net: Torchvision's FCN, DeepLabV3 or LRASPP (without auxiliary head).
        config: The model's config.
    """

    def __init__(self, net: nn.Module, config: ModelConfig) -> None:
        super().__init__(config)
        self.net = net

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Torchvision's ``"out"`` logits ``[B, C, H, W]`` (at the input size)."""
        return self.net(x)["out"]


def _classifiers(net: nn.Module) -> list[tuple[nn.Module, str]]:
    """The class-dependent 1x1 convolutions, as (parent module, attribute name)."""
    head = net.classifier
    if hasattr(head, "high_classifier"):  # LR-ASPP scores both of its branches
        return [(head, "low_classifier"), (head, "high_classifier")]
    return [(head, str(len(head) - 1))]


def _reset_classifiers(net: nn.Module, classes: int) -> None:
    """Replace the final classifier(s) by fresh ones of ``classes`` outputs."""
    for parent, name in _classifiers(net):
        old = getattr(parent, name)
        setattr(parent, name, nn.Conv2d(old.in_channels, classes, 1))


def _classes_in_file(arch: _Arch, state: dict[str, torch.Tensor], file: str) -> int:
    """``C`` of a saved :class:`TorchvisionSegmenter` state dict."""
    if arch.classes_key not in state:
        raise WeightsError(
            "not the weights of this visionkit segmenter", file=file, field=arch.classes_key
        )
    return int(state[arch.classes_key].shape[0])


def _load_backbone(net: nn.Module, arch: _Arch, spec: str) -> None:
    """Load the backbone classifier's weights into ``net.backbone``.

    The classifier is built with the segmenter's dilation and loaded whole (strictly) by
    :func:`~visionkit.models.weights.load_weights`; its modules then replace the
    backbone's, wrapped by torchvision's own layer getter with the same outputs.
    """
    from torchvision.models import get_model

    classifier = get_model(arch.backbone, weights=None, **arch.dilation)
    load_weights(classifier, spec, model_name=arch.backbone)
    body = classifier.features if hasattr(classifier, "features") else classifier
    net.backbone = type(net.backbone)(body, return_layers=net.backbone.return_layers)


def _torchvision_state(source: WeightsSource) -> dict[str, torch.Tensor]:
    """A torchvision checkpoint without its auxiliary head (not built here)."""
    state = read_state_dict(source)
    return {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}


def build_torchvision_segmenter(
    name: str,
    /,
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = _SIDE,
    weights_backbone: str | None = None,
) -> TorchvisionSegmenter:
    """Build torchvision segmenter ``name`` as a :class:`TorchvisionSegmenter`, loading weights.

    Registered once per entry of ``_ARCHS``, with ``name`` bound.

    Args:
        name: The torchvision builder name (``"fcn_resnet50"``), also the registry name.
        num_classes: ``C`` classes, background included; ``None`` keeps the weights' (21
            for the COCO-VOC weights and for random init).
        weights: ``None`` (random init, no downloads), a torchvision enum name
            (``"DEFAULT"``, ``"COCO_WITH_VOC_LABELS_V1"``) or a visionkit weights file of
            this model.
        image_size: Square input side the model is meant for (520 for the weights; any
            size works).
        weights_backbone: Enum name of the backbone classifier's ImageNet weights
            (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or a file of its state dict, loaded when
            ``weights`` is ``None``; not recorded in the config (a checkpoint holds them).

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: ``weights_backbone`` with ``weights``.
        WeightsError: The weights cannot be found (offline: the message names the file to
            place in the torch hub cache), read or fitted.
    """
    from torchvision.models import get_model

    arch = _ARCHS[name]
    check_backbone_weights(weights, weights_backbone)
    source = resolve_torchvision_weights(weights, model_name=name)
    torchvision = source is not None and source.kind == "torchvision"
    state = read_state_dict(source) if source is not None and not torchvision else None
    if torchvision:
        classes = source.num_classes
    elif state is not None:
        classes = _classes_in_file(arch, state, source.location)
    else:
        classes = DEFAULT_NUM_CLASSES
    net = get_model(name, weights=None, weights_backbone=None, num_classes=classes, aux_loss=False)
    if torchvision:
        apply_state_dict(net, _torchvision_state(source), file=source.location)
    if weights_backbone is not None:
        _load_backbone(net, arch, weights_backbone)
    names = tuple(source.meta["categories"]) if torchvision else None
    config = segment_config(name, classes, weights, {"image_size": image_size})
    model = TorchvisionSegmenter(net, dataclasses.replace(config, names=names))
    if state is not None:
        apply_state_dict(model, state, file=source.location)
    if num_classes is not None and num_classes != classes:
        _reset_classifiers(net, num_classes)
        model.config = dataclasses.replace(config, num_classes=num_classes, names=None)
    return model


register_variants(build_torchvision_segmenter, _ARCHS)
