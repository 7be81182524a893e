"""Backbones of the FCN and DeepLabv3+ segmenters: one protocol, a CPU-sized CNN and torchvision's.

A :class:`Backbone` maps images ``[B, 3, H, W]`` to four feature maps ``[c2, c3, c4, c5]``
at strides 4, 8, 16 and 32, as ResNet's ``layer1..layer4`` (FCN's ``pool2..pool5``).
``dilate=(d4, d5)`` replaces the stride of the stride-16 stage (``c4``) and of the
stride-32 stage (``c5``) by dilation, as DeepLab does (Chen et al. 2017, "Rethinking Atrous
Convolution"), so ``(False, True)`` gives output stride 16 and ``(True, True)`` 8: the
later stages keep the resolution and their 3x3 convolutions grow their dilation instead,
keeping each layer's receptive field in input pixels.

``vgg-small`` (the default) is a VGG-style CNN of five stride-2 stages (16 to 256
channels) that trains on a CPU; ``resnet18``, ``resnet50`` and ``mobilenet_v3_large`` are
torchvision's modules, their ImageNet weights loaded (``weights_backbone``) through
:func:`~visionkit.models.weights.load_weights`, never torchvision's own downloader.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models.segment._conv import conv_bn_relu
from visionkit.models.weights import load_weights

__all__ = ["BACKBONES", "Backbone", "build_backbone", "check_backbone_weights"]

BACKBONES = ("vgg-small", "resnet18", "resnet50", "mobilenet_v3_large")

_VGG_WIDTHS = (16, 32, 64, 128, 256)  # stage i ends at stride 2 ** (i + 1)
_VGG_CONVS = (1, 1, 2, 2, 2)


class Backbone(nn.Module):
    """Stages that map images to ``[c2, c3, c4, c5]`` (strides 4, 8, 16, 32 before dilation).

    Args:
        stages: Five modules applied in turn; the outputs of the last four are returned.
        channels: Channels of ``c2``, ``c3``, ``c4`` and ``c5``.

    Attributes:
        channels: As given.
    """

    def __init__(self, stages: list[nn.Module], channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[c2, c3, c4, c5]`` of images ``[B, 3, H, W]``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[1:]


def _vgg_small(dilate: tuple[bool, bool]) -> Backbone:
    """The CPU-sized VGG-style backbone: stage 1 a stride-2 convolution, then 2x2 max-pools.

    A dilated stage drops its max-pool, and its convolutions and those after it double
    their dilation.
    """
    stages, dilation, channels = [], 1, 3
    for index, (width, convs) in enumerate(zip(_VGG_WIDTHS, _VGG_CONVS, strict=True)):
        layers: list[nn.Module] = []
        if index == 0:
            layers.append(conv_bn_relu(channels, width, stride=2))
            channels, convs = width, convs - 1
        elif index >= 3 and dilate[index - 3]:
            dilation *= 2
        else:
            layers.append(nn.MaxPool2d(2))
        for _ in range(convs):
            layers.append(conv_bn_relu(channels, width, dilation=dilation))
            channels = width
        stages.append(nn.Sequential(*layers))
    return Backbone(stages, (32, 64, 128, 256))


def _resnet(name: str, dilate: tuple[bool, bool], weights: str | None) -> Backbone:
    """Torchvision's ResNet as stages stem+layer1, layer2, layer3, layer4."""
    from torchvision.models import get_model

    if name == "resnet18" and any(dilate):
        raise ConfigError(
            "resnet18's basic blocks cannot be dilated; use resnet50",
            field="backbone",
        )
    net = get_model(name, weights=None, replace_stride_with_dilation=[False, *dilate])
    load_weights(net, weights, model_name=name)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [stem, net.layer1, net.layer2, net.layer3, net.layer4]
    widths = (64, 128, 256, 512) if name == "resnet18" else (256, 512, 1024, 2048)
    return Backbone(stages, widths)


def _mobilenet(dilate: tuple[bool, bool], weights: str | None) -> Backbone:
    """Torchvision's MobileNetV3-Large, its ``features`` cut where the stride doubles."""
    from torchvision.models import get_model

    if dilate[0]:
        raise ConfigError(
            "mobilenet_v3_large dilates its last stage only: use output_stride=16",
            field="output_stride",
        )
    net = get_model("mobilenet_v3_large", weights=None, dilated=dilate[1])
    load_weights(net, weights, model_name="mobilenet_v3_large")
    f = net.features
    # Blocks 2, 4, 7 and 13 halve the resolution (torchvision marks them ``_is_cn``).
    cuts = [0, 2, 4, 7, 13, len(f)]
    stages = [f[a:b] for a, b in itertools.pairwise(cuts)]
    return Backbone(stages, (24, 40, 112, 960))


def build_backbone(
    name: str, *, dilate: tuple[bool, bool] = (False, False), weights: str | None = None
) -> Backbone:
    """Build backbone ``name`` of :data:`BACKBONES`, its last stages dilated as ``dilate`` says.

    Args:
        name: ``"vgg-small"``, ``"resnet18"``, ``"resnet50"`` or ``"mobilenet_v3_large"``.
        dilate: Whether the stride-16 and the stride-32 stages trade their stride for
            dilation.
        weights: Weights spec of the torchvision classifier (``"IMAGENET1K_V1"``,
            ``"DEFAULT"`` or a file of its state dict); ``None`` is random init.

    Returns:
        The backbone.

    Raises:
        ConfigError: An unknown name, weights for ``vgg-small``, or a dilation the
            backbone does not support.
        WeightsError: The weights cannot be found (offline: names the file to place), read
            or fitted.
    """
    if name not in BACKBONES:
        raise ConfigError(f"must be one of {', '.join(BACKBONES)}, got {name!r}", field="backbone")
    if name == "vgg-small":
        if weights is not None:
            raise ConfigError("vgg-small has no pretrained weights", field="weights_backbone")
        return _vgg_small(dilate)
    if name == "mobilenet_v3_large":
        return _mobilenet(dilate, weights)
    return _resnet(name, dilate, weights)


def check_backbone_weights(weights: str | None, weights_backbone: str | None) -> None:
    """Refuse ``weights_backbone`` next to ``weights``: the model's weights hold the backbone."""
    if weights is not None and weights_backbone is not None:
        raise ConfigError(
            "weights_backbone applies only without weights (the weights hold the backbone)",
            field="weights_backbone",
        )
