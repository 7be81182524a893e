"""DeepLabv3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic
Image Segmentation", ECCV 2018).

The backbone's last stage(s) trade stride for dilation (output stride 16 or 8, see
:mod:`._backbones`); atrous spatial pyramid pooling (ASPP) runs a 1x1 convolution, three
atrous depthwise-separable 3x3 convolutions and an image-pooling branch side by side and
fuses them; the decoder projects the stride-4 backbone features to 48 channels,
concatenates the ASPP output upsampled 4x (to stride 4) and refines with two separable 3x3
convolutions before the 1x1 classifier. The logits come at stride 4; the base class
upsamples them bilinearly to the input size.

The atrous rates are (6, 12, 18) at output stride 16 and (12, 24, 36) at 8, so each
branch sees the same extent of the image whatever the stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.models._config import ModelConfig
from visionkit.models.registry import register_model
from visionkit.models.segment._backbones import (
    Backbone,
    build_backbone,
    check_backbone_weights,
)
from visionkit.models.segment._build import build_from_options, check_choice, check_int
from visionkit.models.segment._conv import conv_bn_relu
from visionkit.models.segment._segmenter import SemanticSegmenter

__all__ = ["ASPP", "ATROUS_RATES", "DeepLabV3Plus", "SeparableConv2d", "deeplabv3plus"]

ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
"""ASPP rates by output stride: halving the stride doubles the rates (Chen et al. 2017)."""

LOW_LEVEL_CHANNELS = 48


class SeparableConv2d(nn.Sequential):
    """Atrous depthwise-separable convolution: a per-channel 3x3 convolution with dilation,
    BatchNorm and ReLU, then a 1x1 convolution mixing channels, BatchNorm and ReLU.

    Padding equals the dilation, so the output keeps the input's size. It has
    ``9 * C_in + C_in * C_out`` weights whatever the dilation (plus BatchNorm's), against
    ``9 * C_in * C_out`` for a full 3x3 convolution.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        dilation: Spacing of the 3x3 taps (1 is an ordinary convolution).
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=dilation, dilation=dilation,
            groups=in_channels, bias=False,
        )  # fmt: skip
        super().__init__(
            depthwise,
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            conv_bn_relu(in_channels, out_channels, kernel_size=1),
        )


class _ImagePooling(nn.Module):
    """ASPP's image-level branch: global average, 1x1 convolution, broadcast back.

    No BatchNorm: over a 1x1 map it would see one value per image and fail on batches of
    one image in training.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(self.conv(x.mean((2, 3), keepdim=True)))
        return pooled.expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: five branches concatenated, projected by a 1x1 conv.

    Args:
        in_channels: Channels of the backbone's last features.
        out_channels: Channels of every branch and of the output.
        rates: Dilations of the three separable 3x3 branches.

    Returns (forward):
        ``[B, out_channels, h, w]`` at the input's size.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                conv_bn_relu(in_channels, out_channels, kernel_size=1),
                *(SeparableConv2d(in_channels, out_channels, rate) for rate in rates),
                _ImagePooling(in_channels, out_channels),
            ]
        )
        self.project = nn.Sequential(
            conv_bn_relu(len(self.branches) * out_channels, out_channels, kernel_size=1),
            nn.Dropout(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3Plus(SemanticSegmenter):
    """DeepLabv3+: dilated backbone, ASPP, and the stride-4 decoder.

    Args:
        config: The model's config.
        backbone: A backbone whose last stages are dilated for ``output_stride``.
        output_stride: 16 or 8: stride of the backbone's last features (sets the rates).
        channels: Channels of ASPP and of the decoder (256 in the paper).

    Attributes:
        head: The 1x1 classifier, the only class-dependent layer.
    """

    def __init__(
        self, config: ModelConfig, backbone: Backbone, *, output_stride: int, channels: int
    ) -> None:
        super().__init__(config)
        low, high = backbone.channels[0], backbone.channels[-1]
        self.output_stride = output_stride
        self.backbone = backbone
        self.aspp = ASPP(high, channels, ATROUS_RATES[output_stride])
        self.low_level = conv_bn_relu(low, LOW_LEVEL_CHANNELS, kernel_size=1)
        self.decoder = nn.Sequential(
            SeparableConv2d(channels + LOW_LEVEL_CHANNELS, channels),
            SeparableConv2d(channels, channels),
        )
        self.head = nn.Conv2d(channels, config.num_classes, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, ceil(H / 4), ceil(W / 4)]`` of normalised images ``[B, 3, H, W]``."""
        features = self.backbone(x)
        low = self.low_level(features[0])
        context = F.interpolate(
            self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.head(self.decoder(torch.cat([context, low], dim=1)))


@register_model(
    "deeplabv3plus",
    task="segment",
    description="DeepLabv3+, output stride 16, VGG-style CPU backbone, 1.5 M parameters",
)
def deeplabv3plus(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 256,
    output_stride: int = 16,
    backbone: str = "vgg-small",
    weights_backbone: str | None = None,
    channels: int = 128,
) -> DeepLabV3Plus:
    """DeepLabv3+ with atrous separable convolutions in ASPP and the decoder.

    Args:
        num_classes: ``C`` classes, background included; ``None`` keeps the weights' (21
            without weights).
        weights: ``None`` (random init) or a visionkit weights file of this model.
        image_size: Square input side the model is meant for (any size works).
        output_stride: 16 (the stride-32 stage dilated) or 8 (the stride-16 and stride-32
            stages dilated; 4x the compute of those stages).
        backbone: ``"vgg-small"`` (CPU-sized), ``"resnet50"`` or ``"mobilenet_v3_large"``
            (torchvision's; MobileNetV3 supports output stride 16 only).
        weights_backbone: The torchvision backbone's ImageNet weights (``"DEFAULT"``,
            ``"IMAGENET1K_V1"`` or a file of its state dict), loaded when ``weights`` is
            ``None``; not recorded in the config (a checkpoint holds them).
        channels: Channels of ASPP and the decoder (the paper's 256 for large backbones).

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: An option out of range, a backbone that cannot be dilated (resnet18),
            or ``weights_backbone`` with ``weights``.
        WeightsError: The weights cannot be found (offline: names the file to place),
            read or fitted.

    Example:
        >>> model = create_model("deeplabv3plus", num_classes=7, output_stride=8)
        ... # doctest: +SKIP
    """
    check_backbone_weights(weights, weights_backbone)
    options = {
        "image_size": image_size,
        "output_stride": check_choice(output_stride, "output_stride", tuple(ATROUS_RATES)),
        "backbone": backbone,
        "channels": check_int(channels, "channels", 1),
    }

    def make(config: ModelConfig) -> DeepLabV3Plus:
        dilate = (output_stride == 8, True)
        net = build_backbone(backbone, dilate=dilate, weights=weights_backbone)
        return DeepLabV3Plus(config, net, output_stride=output_stride, channels=channels)

    return build_from_options(
        make, name="deeplabv3plus", weights=weights, num_classes=num_classes, options=options
    )
