"""The convolution block that every CNN segmenter here is made of."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn_relu"]


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """Convolution (no bias: BatchNorm follows), BatchNorm and ReLU.

    The padding is ``dilation * (kernel_size - 1) // 2``, so with stride 1 the output keeps
    the input's size whatever the dilation.
    """
    padding = dilation * (kernel_size - 1) // 2
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
