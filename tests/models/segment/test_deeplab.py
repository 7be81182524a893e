"""DeepLabv3+: output stride by dilation, receptive fields, and training at both strides."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models import create_model
from visionkit.models.segment._deeplab import ATROUS_RATES, SeparableConv2d

from .conftest import SHAPES_CLASSES

SIDE = 448


def test_output_stride_8_doubles_the_last_feature_map_of_output_stride_16():
    images = torch.randn(1, 3, 96, 128)
    sizes = {}
    for stride in (16, 8):
        model = create_model("deeplabv3plus", num_classes=3, output_stride=stride).eval()
        assert model.aspp.branches[1][0].dilation == (ATROUS_RATES[stride][0],) * 2
        with torch.no_grad():
            features = model.backbone(images)
        sizes[stride] = tuple(features[-1].shape[-2:])
        assert features[0].shape[-2:] == (24, 32)  # the decoder's stride-4 features
    assert sizes == {16: (6, 8), 8: (12, 16)}


@pytest.mark.parametrize("dilation", [1, 6, 12])
def test_an_atrous_layer_keeps_its_input_size(dilation):
    layer = SeparableConv2d(8, 16, dilation).eval()
    assert layer(torch.randn(2, 8, 13, 21)).shape == (2, 16, 13, 21)


def _receptive_field(layer: nn.Module, channels: int, side: int) -> int:
    """Input pixels with a nonzero gradient of one output channel at the centre position."""
    inputs = torch.randn(1, channels, side, side, requires_grad=True)
    output = layer(inputs)
    centre = output.shape[-1] // 2
    output[0, 0, centre, centre].backward()
    return int((inputs.grad.abs().sum(1) > 0).sum())


def _undilated(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every convolution at dilation 1 (same weights)."""
    module = copy.deepcopy(module)
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and conv.dilation != (1, 1):
            conv.dilation, conv.padding = (1, 1), (conv.kernel_size[0] // 2,) * 2
    return module


class _LastFeatures(nn.Sequential):
    """The backbone's last feature map, then ``layers``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        backbone, *layers = self
        x = backbone(images)[-1]
        for layer in layers:
            x = layer(x)
        return x


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_dilation_grows_the_receptive_field_at_the_same_parameter_count():
    # In theory 185 px dense against 249 px dilated for the backbone, and 281 px against
    # 441 px with the ASPP branch on top: the input is large enough to hold them all.
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", num_classes=3).eval()  # BatchNorm mixes no pixels
    # The backbone's dilated last stage, measured in image pixels.
    backbone = _LastFeatures(model.backbone)
    plain = _undilated(backbone)
    assert _parameters(plain) == _parameters(backbone)
    dense, dilated = _receptive_field(plain, 3, SIDE), _receptive_field(backbone, 3, SIDE)
    assert dilated > 1.5 * dense, (dense, dilated)
    # An ASPP branch (rate 6) on top of it, against the same branch at rate 1.
    branch = _LastFeatures(model.backbone, model.aspp.branches[1])
    plain = _LastFeatures(model.backbone, _undilated(model.aspp.branches[1]))
    assert _parameters(plain) == _parameters(branch)
    dense, dilated = _receptive_field(plain, 3, SIDE), _receptive_field(branch, 3, SIDE)
    assert dilated > 1.5 * dense, (dense, dilated)


@pytest.mark.parametrize("stride", [16, 8])
def test_both_output_strides_train(stride, shapes_64):
    images, masks = shapes_64["train"]
    images, masks = images[:8], masks[:8]
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", num_classes=SHAPES_CLASSES, output_stride=stride)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(images), masks, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_unsupported_strides_and_backbones_are_refused():
    with pytest.raises(ConfigError, match="output_stride"):
        create_model("deeplabv3plus", output_stride=32)
    with pytest.raises(ConfigError, match="backbone"):
        create_model("deeplabv3plus", backbone="resnet18")
    with pytest.raises(ConfigError, match="output_stride"):
        create_model("deeplabv3plus", backbone="mobilenet_v3_large", output_stride=8)
