"""The layers of visionkit's single-shot detector: a CSP backbone, a PAN-FPN neck, a decoupled head.

The network maps a normalised ``[B, 3, H, W]`` batch (``H`` and ``W`` multiples of 32) to
three feature maps at strides 8, 16 and 32 and, per map, class logits and box-side
distributions. The layout follows the CSP designs of the YOLO line (Wang et al.,
"CSPNet", CVPRW 2020; the two-convolution cross-stage block with every bottleneck output
concatenated, as in YOLOv8), the path-aggregation neck of Liu et al. ("PANet", CVPR 2018)
and the decoupled classification and regression branches of YOLOX (Ge et al., 2021).
Boxes are regressed as distances from an anchor point to the four sides, each a discrete
distribution over ``0..reg_max-1`` stride units whose expectation is the distance
("distribution focal loss", Li et al., "Generalized Focal Loss", NeurIPS 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

__all__ = [
    "STRIDES",
    "YoloArch",
    "YoloNet",
    "anchor_points",
    "boxes_to_distances",
    "distances_to_boxes",
    "expected_distances",
]

STRIDES = (8, 16, 32)
"""Output strides of the three pyramid levels, finest first."""


@dataclass(frozen=True)
class YoloArch:
    """Widths and depths of one detector size.

    Attributes:
        widths: Channels of the stem and of backbone stages 2 to 5 (strides 2 to 32).
        depths: Bottlenecks in the CSP blocks of backbone stages 2 to 5 (0: the stage is
            its downsampling convolution alone); the neck's blocks take the depth of stage 5.
        head_width: Channels of the head's classification and box branches (the box
            branch gets at least ``reg_max``).
        head_depth: 3x3 convolutions in each branch before its output convolution.
        reg_max: Bins of each side's distance distribution, in stride units.
    """

    widths: tuple[int, int, int, int, int]
    depths: tuple[int, int, int, int]
    head_width: int
    head_depth: int = 2
    reg_max: int = 16


class ConvBlock(nn.Sequential):
    """Convolution without bias, batch normalisation, SiLU: ``[B, c_in, H, W]`` to
    ``[B, c_out, H / stride, W / stride]``.

    In eval mode without gradients the normalisation is folded into the convolution's
    weight and bias (what Ultralytics' ``fuse`` does), which saves a pass over every feature
    map: about 8 % of yolo-n's latency on a CPU. The folded pair is kept until a tensor it
    comes from changes: an in-place update (an EMA step, a loaded state dict) or a move to
    another device, so training and inference can alternate freely.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.1),
            nn.SiLU(inplace=True),
        )
        self._folded: tuple[tuple[tuple[int, int], ...], torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing():
            return super().forward(x)  # a traced graph keeps the three layers, as trained
        conv, _, activation = self
        weight, bias = self._folded_weights()
        return activation(F.conv2d(x, weight, bias, conv.stride, conv.padding))

    def _folded_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight scaled by the normalisation, and the bias it adds."""
        conv, norm, _ = self
        sources = (conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var)
        # the version counter grows with every in-place change of a tensor
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if self._folded is None or self._folded[0] != key:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            bias = norm.bias - norm.running_mean * scale
            self._folded = (key, conv.weight * scale[:, None, None, None], bias)
        return self._folded[1], self._folded[2]


class Bottleneck(nn.Module):
    """Two 3x3 convolutions with an optional residual connection; channels unchanged."""

    def __init__(self, channels: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3)
        self.conv2 = ConvBlock(channels, channels, 3)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.residual else y


class CSPBlock(nn.Module):
    """Cross-stage partial block: half the channels go through ``depth`` bottlenecks in a
    chain, and the untouched half plus every bottleneck's output are fused by a 1x1
    convolution, so gradients reach each depth by a short path."""

    def __init__(self, c_in: int, c_out: int, depth: int, residual: bool = True) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.split = ConvBlock(c_in, 2 * self.hidden)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, residual) for _ in range(depth))
        self.fuse = ConvBlock((2 + depth) * self.hidden, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.split(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling by three chained 5x5 max-pools (receptive fields 5, 9, 13),
    concatenated: context of the whole object at the coarsest level."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = ConvBlock(channels, channels // 2)
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.fuse = ConvBlock(channels * 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.reduce(x)]
        for _ in range(3):
            parts.append(self.pool(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class Backbone(nn.Module):
    """Stem and four downsampling CSP stages: ``[B, 3, H, W]`` to the stride-8, 16 and 32
    maps ``[B, widths[2..4], H / s, W / s]``."""

    def __init__(self, arch: YoloArch) -> None:
        super().__init__()
        w, d = arch.widths, arch.depths
        self.stem = ConvBlock(3, w[0], 3, 2)
        self.stages = nn.ModuleList(
            nn.Sequential(
                ConvBlock(w[i], w[i + 1], 3, 2),
                CSPBlock(w[i + 1], w[i + 1], d[i]) if d[i] else nn.Identity(),
            )
            for i in range(4)
        )
        self.sppf = SPPF(w[4])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        features[-1] = self.sppf(features[-1])
        return features[1:]


class Neck(nn.Module):
    """PAN-FPN: a top-down path brings coarse semantics to the fine maps, then a bottom-up
    path brings fine localisation back to the coarse ones; widths are kept per level."""

    def __init__(self, arch: YoloArch) -> None:
        super().__init__()
        c3, c4, c5 = arch.widths[2:]
        depth = arch.depths[-1]
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.top_down4 = CSPBlock(c5 + c4, c4, depth, residual=False)
        self.top_down3 = CSPBlock(c4 + c3, c3, depth, residual=False)
        self.down3 = ConvBlock(c3, c3, 3, 2)
        self.bottom_up4 = CSPBlock(c3 + c4, c4, depth, residual=False)
        self.down4 = ConvBlock(c4, c4, 3, 2)
        self.bottom_up5 = CSPBlock(c4 + c5, c5, depth, residual=False)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = features
        t4 = self.top_down4(torch.cat([self.up(p5), p4], dim=1))
        n3 = self.top_down3(torch.cat([self.up(t4), p3], dim=1))
        n4 = self.bottom_up4(torch.cat([self.down3(n3), t4], dim=1))
        n5 = self.bottom_up5(torch.cat([self.down4(n4), p5], dim=1))
        return [n3, n4, n5]


class HeadLevel(nn.Module):
    """The decoupled head of one pyramid level: a classification branch giving ``K`` logits
    and a box branch giving ``4 * reg_max`` side-distribution logits per position."""

    def __init__(self, c_in: int, width: int, depth: int, num_classes: int, reg_max: int) -> None:
        super().__init__()
        box_width = max(width, reg_max)
        self.cls = nn.Sequential(*_branch(c_in, width, depth), _class_output(width, num_classes))
        self.box = nn.Sequential(
            *_branch(c_in, box_width, depth), nn.Conv2d(box_width, 4 * reg_max, 1)
        )
        # Distances start near 1.5 strides (bin probabilities falling as exp(-k / 2)), the
        # size of the objects each level suits, so small objects overlap their first boxes
        # and get a useful share of the box loss, which the assignment weighs by IoU.
        with torch.no_grad():
            self.box[-1].bias.copy_((-0.5 * torch.arange(reg_max)).repeat(4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls(x), self.box(x)

    def reset_classes(self, num_classes: int) -> None:
        """Replace the classification output with a fresh one for ``num_classes`` classes."""
        old = self.cls[-1]
        self.cls[-1] = _class_output(old.in_channels, num_classes).to(old.weight)


def _branch(c_in: int, width: int, depth: int) -> list[ConvBlock]:
    """``depth`` 3x3 convolution blocks from ``c_in`` to ``width`` channels."""
    return [ConvBlock(c_in if i == 0 else width, width, 3) for i in range(depth)]


def _class_output(width: int, num_classes: int) -> nn.Conv2d:
    """The 1x1 class-logit convolution, its bias set so every score starts near 0.01: the
    many background positions then do not swamp the first steps (the prior of Lin et al.,
    "Focal Loss for Dense Object Detection", ICCV 2017)."""
    conv = nn.Conv2d(width, num_classes, 1)
    nn.init.constant_(conv.bias, -math.log((1 - 0.01) / 0.01))
    return conv


class YoloNet(nn.Module):
    """Backbone, neck and head: a normalised batch to per-position logits.

    Args:
        arch: Widths, depths and head settings.
        num_classes: ``K``.

    Returns (``forward``):
        ``(cls_logits [B, N, K], box_logits [B, N, 4, reg_max], sizes)`` where ``N`` sums
        ``H / s * W / s`` over :data:`STRIDES` (finest level first, row-major inside a
        level) and ``sizes`` lists each level's ``(H / s, W / s)``.
    """

    def __init__(self, arch: YoloArch, num_classes: int) -> None:
        super().__init__()
        self.reg_max = arch.reg_max
        self.backbone = Backbone(arch)
        self.neck = Neck(arch)
        self.head = nn.ModuleList(
            HeadLevel(c, arch.head_width, arch.head_depth, num_classes, arch.reg_max)
            for c in arch.widths[2:]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        maps = self.neck(self.backbone(x))
        cls_parts, box_parts, sizes = [], [], []
        for level, feature in zip(self.head, maps, strict=True):
            cls, box = level(feature)
            sizes.append((feature.shape[2], feature.shape[3]))
            cls_parts.append(cls.flatten(2))
            box_parts.append(box.flatten(2))
        cls_logits = torch.cat(cls_parts, dim=2).transpose(1, 2)
        box_logits = torch.cat(box_parts, dim=2).transpose(1, 2)
        return cls_logits, box_logits.unflatten(2, (4, self.reg_max)), sizes


def anchor_points(
    sizes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The anchor points of the pyramid levels, in :class:`YoloNet`'s output order.

    Args:
        sizes: ``(height, width)`` of each level's map, finest first (:data:`STRIDES`).
        device: Where the tensors go.
        dtype: Their floating dtype.

    Returns:
        ``(points [N, 2], strides [N])``: the centre ``(x, y)`` in input pixels of every
        map cell, ``((col + 0.5) * s, (row + 0.5) * s)``, and its level's stride ``s``.
    """
    points, strides = [], []
    for (height, width), stride in zip(sizes, STRIDES, strict=True):
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2))
        strides.append(torch.full((height * width,), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(strides)


def expected_distances(box_logits: torch.Tensor) -> torch.Tensor:
    """``[..., 4, reg_max]`` side-distribution logits to ``[..., 4]`` expected distances in
    stride units (the softmax-weighted mean of the bins ``0..reg_max-1``)."""
    bins = torch.arange(box_logits.shape[-1], device=box_logits.device, dtype=box_logits.dtype)
    return box_logits.softmax(dim=-1) @ bins


def distances_to_boxes(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` points and ``[..., 4]`` distances to the left, top, right and bottom
    sides (pixels) to ``[..., 4]`` ``xyxy`` boxes."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`distances_to_boxes`: ``[..., 4]`` ``xyxy`` boxes to the
    distances from ``[..., 2]`` points to their sides (negative for a point outside)."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)
