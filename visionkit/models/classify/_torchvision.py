"""Torchvision classifiers as :class:`ImageClassifier`: ResNet, MobileNetV3, ConvNeXt, ViT-B/16.

Each builder makes torchvision's own model, loads torchvision's weights into it under
torchvision's parameter names (from the torch hub cache, see
:mod:`visionkit.models.weights`), then regroups the same modules into a backbone that ends
in pooled features, the final ``nn.Linear`` as the head, and named stages. Nothing is
re-implemented, so the pretrained numbers are torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from visionkit.models.classify._build import build_classifier, make_config, register_classifier
from visionkit.models.classify._classifier import ImageClassifier
from visionkit.models.classify._pretrained import PRETRAINED
from visionkit.models.classify._vit import ViTBackbone, ViTEmbed
from visionkit.models.weights import WeightsSource, apply_state_dict, read_state_dict

__all__ = [
    "convnext_tiny",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet50",
    "vit_b_16",
]


@dataclass(frozen=True)
class _Parts:
    """A torchvision model regrouped: backbone to pooled features, head, stages, dropout."""

    backbone: nn.Module
    head: nn.Linear
    stage_names: tuple[str, ...]
    drop_rate: float = 0.0


def _resnet_parts(net: nn.Module, image_size: int) -> _Parts:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    layers = [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    backbone = nn.Sequential(
        OrderedDict([("stem", stem), *layers, ("pool", net.avgpool), ("flatten", nn.Flatten(1))])
    )
    return _Parts(backbone, net.fc, ("stem", *(name for name, _ in layers)))


def _mobilenet_parts(net: nn.Module, image_size: int) -> _Parts:
    # classifier = Linear, Hardswish, Dropout, Linear: the first two are pre-logits features.
    linear, act, drop, head = net.classifier
    backbone = nn.Sequential(
        OrderedDict(
            features=net.features,
            pool=net.avgpool,
            flatten=nn.Flatten(1),
            pre_logits=nn.Sequential(linear, act),
        )
    )
    stages = (*(f"features.{i}" for i in range(len(net.features))), "pre_logits")
    return _Parts(backbone, head, stages, drop.p)


def _convnext_parts(net: nn.Module, image_size: int) -> _Parts:
    # features = stem, stage 1, then (downsample, stage) three times.
    f = net.features
    norm, flatten, head = net.classifier
    backbone = nn.Sequential(
        OrderedDict(
            stem=f[0],
            stage1=f[1],
            stage2=nn.Sequential(f[2], f[3]),
            stage3=nn.Sequential(f[4], f[5]),
            stage4=nn.Sequential(f[6], f[7]),
            pool=net.avgpool,
            norm=nn.Sequential(norm, flatten),
        )
    )
    return _Parts(backbone, head, ("stem", "stage1", "stage2", "stage3", "stage4", "norm"))


def _vit_parts(net: nn.Module, image_size: int) -> _Parts:
    encoder = net.encoder
    embed = ViTEmbed(net.conv_proj, net.class_token, encoder.pos_embedding, encoder.dropout.p)
    backbone = ViTBackbone(embed, nn.Sequential(*encoder.layers), encoder.ln)
    embed.resize_grid(image_size // net.patch_size)  # weights made at another size
    return _Parts(backbone, net.heads.head, backbone.stage_names())


@dataclass(frozen=True)
class _Arch:
    """How to regroup one torchvision architecture; ``sized``: its builder takes image_size."""

    parts: Callable[[nn.Module, int], _Parts]
    sized: bool = False


_ARCHS = {
    "resnet18": _Arch(_resnet_parts),
    "resnet50": _Arch(_resnet_parts),
    "mobilenet_v3_small": _Arch(_mobilenet_parts),
    "mobilenet_v3_large": _Arch(_mobilenet_parts),
    "convnext_tiny": _Arch(_convnext_parts),
    "vit_b_16": _Arch(_vit_parts, sized=True),
}


def _torchvision_net(name: str, num_classes: int, image_size: int) -> nn.Module:
    """Torchvision's model ``name``, randomly initialised."""
    from torchvision.models import get_model

    sized = {"image_size": image_size} if _ARCHS[name].sized else {}
    return get_model(name, weights=None, num_classes=num_classes, **sized)


def _build(
    name: str, *, num_classes: int | None, weights: str | None, image_size: int
) -> ImageClassifier:
    """Build torchvision model ``name`` as an :class:`ImageClassifier`, loading ``weights``."""
    arch = _ARCHS[name]

    def wrap(net: nn.Module, classes: int) -> ImageClassifier:
        parts = arch.parts(net, image_size)
        config = make_config(name, classes, image_size, weights, {"image_size": image_size})
        return ImageClassifier(
            parts.backbone, parts.head, config, parts.stage_names, parts.drop_rate
        )

    def from_torchvision(source: WeightsSource) -> ImageClassifier:
        classes = source.num_classes or 1000
        trained_size = source.meta["min_size"][0] if arch.sized else image_size
        net = _torchvision_net(name, classes, trained_size)
        apply_state_dict(net, read_state_dict(source), file=source.location)
        return wrap(net, classes)

    return build_classifier(
        lambda classes: wrap(_torchvision_net(name, classes, image_size), classes),
        model_name=name,
        weights=weights,
        num_classes=num_classes,
        pretrained={"torchvision": from_torchvision},
    )


_SIZE = PRETRAINED["resnet18"].image_size


@register_classifier("resnet18", "ResNet-18 (torchvision), 11.7 M parameters, ImageNet-1k weights")
def resnet18(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """ResNet-18 (He et al. 2016); stages stem, layer1..layer4; 512 features."""
    return _build("resnet18", num_classes=num_classes, weights=weights, image_size=image_size)


@register_classifier("resnet50", "ResNet-50 (torchvision), 25.6 M parameters, ImageNet-1k weights")
def resnet50(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """ResNet-50 (He et al. 2016); stages stem, layer1..layer4; 2048 features."""
    return _build("resnet50", num_classes=num_classes, weights=weights, image_size=image_size)


@register_classifier("mobilenet_v3_small", "MobileNetV3-Small (torchvision), 2.5 M parameters")
def mobilenet_v3_small(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """MobileNetV3-Small (Howard et al. 2019); one stage per block; 1024 features."""
    return _build(
        "mobilenet_v3_small", num_classes=num_classes, weights=weights, image_size=image_size
    )


@register_classifier("mobilenet_v3_large", "MobileNetV3-Large (torchvision), 5.5 M parameters")
def mobilenet_v3_large(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """MobileNetV3-Large (Howard et al. 2019); one stage per block; 1280 features."""
    return _build(
        "mobilenet_v3_large", num_classes=num_classes, weights=weights, image_size=image_size
    )


@register_classifier(
    "convnext_tiny", "ConvNeXt-T (torchvision), 28.6 M parameters, ImageNet-1k weights"
)
def convnext_tiny(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """ConvNeXt-T (Liu et al. 2022); stages stem, stage1..stage4, norm; 768 features."""
    return _build("convnext_tiny", num_classes=num_classes, weights=weights, image_size=image_size)


@register_classifier("vit_b_16", "ViT-B/16 (torchvision), 86.6 M parameters, ImageNet-1k weights")
def vit_b_16(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = _SIZE
) -> ImageClassifier:
    """ViT-B/16 (Dosovitskiy et al. 2021); stages embed, blocks.0..11, norm; 768 features.

    ``image_size`` sets the positional-embedding grid; weights made at another size are
    resampled to it, and other input sizes are resampled on the fly.
    """
    return _build("vit_b_16", num_classes=num_classes, weights=weights, image_size=image_size)
