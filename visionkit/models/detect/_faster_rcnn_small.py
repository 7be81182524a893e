"""``fasterrcnn-small``: torchvision's Faster R-CNN sized to train from scratch on a CPU.

Torchvision's own Faster R-CNN modules (RPN, RoIAlign, RoI heads, box coding, losses) on
:class:`SmallBackbone`: four conv stages of :data:`WIDTHS` channels with BatchNorm and a
feature pyramid of :data:`FPN_CHANNELS` channels at strides 4, 8 and 16, with anchors of
8-128 pixels (:data:`ANCHOR_SIZES`), a two-layer box head of :data:`REPRESENTATION`
features and a few hundred proposals and sampled regions (:data:`SMALL_DEFAULTS`): 1.6 M
parameters, and at 128 pixels a training step costs about a twelfth of the MobileNetV3 FPN
model's on a CPU (trained from scratch on 200 synthetic ``shapes`` images for 250 steps,
about 100 seconds of one core, it reaches a validation mAP50 of about 0.1). It sits behind
:class:`~visionkit.models.detect._torchvision_adapter.TorchvisionDetector` like every
torchvision detector (class indices ``0..K-1`` outside, :class:`Thresholds` as the RoI
heads' post-processing). There are no pretrained weights: ``weights`` is ``None`` or a
visionkit weights file of this model.

Example:
    >>> model = create_model("fasterrcnn-small", num_classes=6, image_size=128)
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._torchvision_adapter import (
    _RCNN,
    TorchvisionDetector,
    _check_options,
    _classes_in_file,
)
from visionkit.models.registry import register_model
from visionkit.models.weights import apply_state_dict, read_state_dict, resolve_weights

__all__ = [
    "ANCHOR_SIZES",
    "FPN_CHANNELS",
    "LEVELS",
    "SAMPLING_RATIO",
    "SMALL_DEFAULTS",
    "SmallBackbone",
    "build_small_rcnn",
    "fasterrcnn_small",
]

NAME = "fasterrcnn-small"

WIDTHS = (32, 64, 128, 128)
"""Channels of the backbone's stages, each halving the resolution (strides 2 to 16)."""

FPN_CHANNELS = 64
"""Channels of the feature pyramid over the last three stages (strides 4, 8, 16)."""

ANCHOR_SIZES = ((8, 16), (32, 48), (80, 128))
"""Anchor sides in pixels of the resized image, per pyramid level, each at aspect ratios
0.5, 1 and 2."""

LEVELS = tuple(str(i) for i in range(len(ANCHOR_SIZES)))
"""Names of the pyramid levels that :class:`SmallBackbone` returns and RoIAlign pools from."""

REPRESENTATION = 256
"""Features of the two-layer box head (torchvision's FPN models use 1024)."""

SAMPLING_RATIO = 1
"""RoIAlign samples per output bin and axis. Torchvision's CPU RoIAlign backward costs
in proportion to the samples, and dominates a step at its usual 2 (four samples a bin)."""

SMALL_DEFAULTS: dict[str, Any] = {
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 150,
    "rpn_batch_size_per_image": 128,
    "box_batch_size_per_image": 64,
}
"""Torchvision options changed for small images: a 128-pixel image has about 8,000
anchors, not the 200,000 of an 800-pixel FPN model, so thousands of proposals and 512
sampled regions an image are neither needed nor cheap."""

DEFAULT_NUM_CLASSES = 80
"""Classes without ``num_classes`` and without weights: COCO's 80."""

_BUILT_HERE = ("rpn_anchor_generator", "rpn_head", "box_roi_pool", "box_head", "box_predictor")
"""FasterRCNN arguments that this builder makes itself: not options."""


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    """3x3 convolution, BatchNorm, ReLU."""
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallBackbone(nn.Module):
    """A plain CNN with a feature pyramid (Lin et al. 2017), for torchvision's detectors.

    Each stage is a stride-2 then a stride-1 3x3 convolution with BatchNorm and ReLU; the
    pyramid merges the last three stages top-down.

    Args:
        widths: Channels of the stages, from input to output (at least three stages).
        channels: ``C``, channels of every pyramid level.

    Attributes:
        out_channels: ``C``, as torchvision's detectors read it off their backbone.
    """

    def __init__(self, widths: tuple[int, ...] = WIDTHS, channels: int = FPN_CHANNELS) -> None:
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        ins = (3, *widths[:-1])
        self.stages = nn.ModuleList(
            nn.Sequential(*_conv(cin, cout, 2), *_conv(cout, cout, 1))
            for cin, cout in zip(ins, widths, strict=True)
        )
        self.fpn = FeaturePyramidNetwork(list(widths[-3:]), channels)
        self.out_channels = channels
        for module in self.stages.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Normalised images ``[B, 3, H, W]`` to levels ``"0"``, ``"1"``, ``"2"`` of
        ``[B, C, H / s, W / s]`` at strides ``s`` 4, 8 and 16 (for four stages)."""
        stages = []
        for stage in self.stages:
            images = stage(images)
            stages.append(images)
        return self.fpn(OrderedDict((str(i), x) for i, x in enumerate(stages[-3:])))


def _net(
    name: str,
    classes: int,
    image_size: int,
    options: dict[str, Any],
    heads: Callable[[int], dict[str, nn.Module]] | None,
) -> nn.Module:
    """Torchvision's FasterRCNN on :class:`SmallBackbone` for ``classes + 1`` classes, or its
    MaskRCNN with the modules that ``heads`` makes for that class count."""
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    extra = {} if heads is None else heads(classes + 1)
    for key in (*_BUILT_HERE, *extra):
        if key in options:
            raise ConfigError(f"{name} builds its own {key}; it is not an option", field=key)
    backbone = SmallBackbone()
    net = (FasterRCNN if heads is None else MaskRCNN)(
        backbone,
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(LEVELS)),
        box_roi_pool=MultiScaleRoIAlign(LEVELS, output_size=7, sampling_ratio=SAMPLING_RATIO),
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, REPRESENTATION),
        box_predictor=FastRCNNPredictor(REPRESENTATION, classes + 1),
        **extra,
        **{**SMALL_DEFAULTS, **options},
    )
    _check_options(name, net, options)  # after: the models' **kwargs swallow unknown keys
    net.transform.min_size, net.transform.max_size = (image_size,), image_size
    return net


@register_model(
    NAME,
    task="detect",
    description="Faster R-CNN on a small from-scratch CNN (torchvision's heads): CPU-sized",
)
def fasterrcnn_small(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 128,
    **options: Any,
) -> TorchvisionDetector:
    """Faster R-CNN (Ren et al. 2015) for small images, trained from scratch.

    Args:
        num_classes: ``K`` object classes (background not counted); ``None`` keeps the
            weights file's count, or :data:`DEFAULT_NUM_CLASSES` without one.
        weights: ``None`` (random init) or a visionkit weights file or checkpoint of this
            model.
        image_size: The longer side that images are resized to inside the model (the
            anchors suit 64-256 pixels).
        **options: Torchvision FasterRCNN options over :data:`SMALL_DEFAULTS`
            (``rpn_batch_size_per_image``, ``box_batch_size_per_image``, ``image_mean``...).

    Returns:
        The detector, in train mode.

    Raises:
        ConfigError: A bad ``image_size``, or an option FasterRCNN does not take, that the
            builder makes itself, or that :meth:`~Detector.set_thresholds` sets.
        WeightsError: ``weights`` is not a visionkit weights file of this model, or was
            trained for another ``num_classes``.
    """
    return build_small_rcnn(
        NAME, num_classes=num_classes, weights=weights, image_size=image_size, options=options
    )


def build_small_rcnn(
    name: str,
    *,
    num_classes: int | None,
    weights: str | None,
    image_size: int,
    options: dict[str, Any],
    heads: Callable[[int], dict[str, nn.Module]] | None = None,
) -> TorchvisionDetector:
    """Build registry entry ``name`` of this family: the body of :func:`fasterrcnn_small`.

    Args:
        name: The registry name (checked in weights files, named in errors).
        num_classes, weights, image_size, options: As :func:`fasterrcnn_small` takes them.
        heads: Makes the extra modules of torchvision's ``MaskRCNN`` (``mask_roi_pool``,
            ``mask_head``, ``mask_predictor``) for a class count that includes the
            background; ``None`` builds ``FasterRCNN``.

    Returns:
        The detector, in train mode.

    Raises:
        ConfigError, WeightsError: As :func:`fasterrcnn_small` raises them.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ConfigError(f"must be an int >= 32, got {image_size!r}", field="image_size")
    source = resolve_weights(weights, model_name=name)
    if source is not None and source.kind != "file":
        raise WeightsError(
            f"{name} has no pretrained weights; pass weights=None or a visionkit weights file",
            file=source.location,
            field="weights",
        )
    state = None if source is None else read_state_dict(source)
    classes = DEFAULT_NUM_CLASSES if num_classes is None else num_classes
    if state is not None and num_classes is None:
        classes = _classes_in_file(state, _RCNN, source.location)
    net = _net(name, classes, image_size, options, heads)
    config = ModelConfig(
        name,
        "detect",
        classes,
        image_size,
        tuple(net.transform.image_mean),
        tuple(net.transform.image_std),
        weights,
        {"image_size": image_size, **options},
    )
    model = TorchvisionDetector(net, config)
    if state is not None:
        apply_state_dict(model, state, file=source.location)
    return model
