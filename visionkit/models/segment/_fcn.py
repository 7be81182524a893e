"""Fully convolutional networks (Long, Shelhamer and Darrell, "Fully Convolutional Networks
for Semantic Segmentation", CVPR 2015 / TPAMI 2017): FCN-32s, FCN-16s and FCN-8s.

A CNN backbone's stride-32 features get a 1x1 class-score layer. FCN-32s upsamples those
scores 32x; FCN-16s first upsamples them 2x with a transposed convolution and adds the
scores of the stride-16 features; FCN-8s does the same once more with the stride-8
features. The 2x transposed convolutions start as bilinear interpolation and learn; the
final upsampling is fixed bilinear interpolation, and the score layers start at zero, as
in the paper (so FCN-8s starts as FCN-16s starts as FCN-32s).

Inputs are zero-padded on the bottom and right to a multiple of 32 (zero is the mean after
normalisation) so every stride's grid aligns with the next, and the logits are cropped
back: any input size works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.models._config import ModelConfig
from visionkit.models.segment._backbones import (
    Backbone,
    build_backbone,
    check_backbone_weights,
)
from visionkit.models.segment._build import Variant, build_from_options, register_variants
from visionkit.models.segment._segmenter import SemanticSegmenter

__all__ = ["FCN", "FCNHead", "bilinear_upsampler", "build_fcn"]

_STRIDE = 32


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A ``factor``-times upsampling transposed convolution, initialised to bilinear.

    Kernel ``2 * factor``, stride ``factor``, padding ``factor // 2``: channel ``c`` maps
    to channel ``c`` with the bilinear kernel (others start at zero), which equals
    ``F.interpolate(x, scale_factor=factor, mode="bilinear")`` away from the borders.

    Args:
        channels: Input and output channels.
        factor: Upsampling factor, even.

    Returns:
        The layer (weights learnable, no bias).
    """
    size = 2 * factor
    centre = factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    layer = nn.ConvTranspose2d(channels, channels, size, factor, factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return layer


class FCNHead(nn.Module):
    """Class scores of the stride-32 features, fused with ``skips`` finer score maps.

    Args:
        channels: Channels of the stride-8, -16 and -32 features.
        num_classes: ``C``.
        skips: 0 (FCN-32s), 1 (FCN-16s: adds stride 16) or 2 (FCN-8s: adds 16 and 8).

    Attributes:
        score: 1x1 score layers, stride 32 first.
        up: The 2x bilinear-initialised transposed convolutions, one per skip.
        stride: Stride of the fused scores (32, 16 or 8).
    """

    def __init__(self, channels: tuple[int, int, int], num_classes: int, skips: int) -> None:
        super().__init__()
        coarse_first = channels[::-1][: skips + 1]
        self.score = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in coarse_first)
        self.up = nn.ModuleList(bilinear_upsampler(num_classes, 2) for _ in range(skips))
        self.stride = _STRIDE // 2**skips
        for layer in self.score:  # zero-initialised class scoring, as in the paper
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fused scores ``[B, C, H / stride, W / stride]`` of ``[c3, c4, c5]``."""
        coarse_first = features[::-1]
        scores = self.score[0](coarse_first[0])
        for up, score, feature in zip(self.up, self.score[1:], coarse_first[1:], strict=False):
            scores = up(scores) + score(feature)
        return scores


class FCN(SemanticSegmenter):
    """A fully convolutional network: backbone, :class:`FCNHead`, fixed bilinear upsampling.

    Args:
        config: The model's config.
        backbone: A :class:`~visionkit.models.segment._backbones.Backbone` with strides
            8, 16 and 32 at ``c3``, ``c4`` and ``c5`` (not dilated).
        skips: See :class:`FCNHead`.
    """

    def __init__(self, config: ModelConfig, backbone: Backbone, skips: int) -> None:
        super().__init__(config)
        self.backbone = backbone
        self.head = FCNHead(backbone.channels[1:], config.num_classes, skips)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, H, W]`` of normalised images ``[B, 3, H, W]``, at input size."""
        height, width = x.shape[-2:]
        padded = F.pad(x, (0, -width % _STRIDE, 0, -height % _STRIDE))
        scores = self.head(self.backbone(padded)[1:])
        logits = F.interpolate(
            scores, scale_factor=self.head.stride, mode="bilinear", align_corners=False
        )
        return logits[..., :height, :width]


@dataclass(frozen=True)
class _FCNVariant(Variant):
    """One FCN variant: its registry entry and the finer score maps it fuses.

    Attributes:
        skips: See :class:`FCNHead`.
    """

    skips: int


_VARIANTS = {
    "fcn-32s": _FCNVariant(
        0,
        description="FCN-32s, VGG-style CPU backbone, 1.2 M parameters",
        summary="FCN-32s: the stride-32 class scores, upsampled 32x.",
    ),
    "fcn-16s": _FCNVariant(
        1,
        description="FCN-16s (stride-16 skip), VGG-style CPU backbone, 1.2 M parameters",
        summary="FCN-16s: stride-32 scores 2x up plus stride-16 scores, 16x up.",
    ),
    "fcn-8s": _FCNVariant(
        2,
        description="FCN-8s (stride-16 and -8 skips), VGG-style CPU backbone, 1.2 M parameters",
        summary="FCN-8s: FCN-16s's fused scores 2x up plus stride-8 scores, 8x up.",
    ),
}


def build_fcn(
    name: str,
    /,
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 256,
    backbone: str = "vgg-small",
    weights_backbone: str | None = None,
) -> FCN:
    """Build FCN variant ``name`` (``"fcn-8s"``), registered with ``name`` bound.

    Args:
        name: Registry name of the variant: ``"fcn-32s"``, ``"fcn-16s"`` or ``"fcn-8s"``.
        num_classes: ``C`` classes, background included; ``None`` keeps the weights' (21
            without weights).
        weights: ``None`` (random init) or a visionkit weights file of this model.
        image_size: Square input side the model is meant for (any size works).
        backbone: ``"vgg-small"`` (five stride-2 stages of 16 to 256 channels, 1.2 M
            parameters, trains on a CPU), ``"resnet18"``, ``"resnet50"`` or
            ``"mobilenet_v3_large"`` (torchvision's).
        weights_backbone: The torchvision backbone's ImageNet weights (``"DEFAULT"``,
            ``"IMAGENET1K_V1"`` or a file of its state dict), loaded when ``weights`` is
            ``None``; not recorded in the config (a checkpoint holds them).

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: An unknown backbone, or ``weights_backbone`` with ``weights``.
        WeightsError: The weights cannot be found (offline: names the file to place),
            read or fitted.

    Example:
        >>> model = create_model("fcn-8s", num_classes=7)  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, 70, 90)).shape  # doctest: +SKIP
        torch.Size([1, 7, 70, 90])
    """
    check_backbone_weights(weights, weights_backbone)
    skips = _VARIANTS[name].skips
    return build_from_options(
        lambda config: FCN(config, build_backbone(backbone, weights=weights_backbone), skips),
        name=name,
        weights=weights,
        num_classes=num_classes,
        options={"image_size": image_size, "backbone": backbone},
        classes_key="head.score.0.weight",
    )


register_variants(build_fcn, _VARIANTS)
