"""``maskrcnn-small``: torchvision's Mask R-CNN sized to train from scratch on a CPU.

``fasterrcnn-small`` (the same backbone, pyramid, anchors, box head and small defaults of
:mod:`._faster_rcnn_small`) plus torchvision's mask branch (He et al. 2017): a 14 x 14
RoIAlign on the pyramid, :data:`MASK_LAYERS` 3x3 convolutions
(``MaskRCNNHeads``) and a 2x transposed convolution to a 28 x 28 mask per class
(``MaskRCNNPredictor``). In train mode the targets carry ``"masks"`` (``uint8``
``[N, H, W]``); in eval mode each detection has a ``"masks"`` probability map
``[1, H, W]`` in 0-1, pasted into its input image, which the API thresholds at 0.5.
There are no pretrained weights: ``weights`` is ``None`` or a visionkit weights file of
this model.

Example:
    >>> model = create_model("maskrcnn-small", num_classes=6, image_size=128)
    ... # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from torch import nn

from visionkit.models.detect._faster_rcnn_small import (
    FPN_CHANNELS,
    LEVELS,
    SAMPLING_RATIO,
    build_small_rcnn,
)
from visionkit.models.detect._torchvision_adapter import TorchvisionDetector
from visionkit.models.registry import register_model

__all__ = ["MASK_LAYERS", "MASK_POOL", "maskrcnn_small"]

NAME = "maskrcnn-small"

MASK_POOL = 14
"""Side of the RoIAlign grid that the mask head sees (torchvision's, and the paper's)."""

MASK_LAYERS = (32, 32, 32, 32)
"""Channels of the mask head's 3x3 convolutions: torchvision's four layers, at the
pyramid's width instead of 256 (the head runs on every positive region of a batch, and at
256 channels it would cost several times the backbone)."""


def _mask_heads(classes: int) -> dict[str, nn.Module]:
    """Torchvision's mask RoIAlign, head and predictor for ``classes`` (background included)."""
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    return {
        "mask_roi_pool": MultiScaleRoIAlign(
            LEVELS, output_size=MASK_POOL, sampling_ratio=SAMPLING_RATIO
        ),
        "mask_head": MaskRCNNHeads(FPN_CHANNELS, MASK_LAYERS, dilation=1),
        "mask_predictor": MaskRCNNPredictor(MASK_LAYERS[-1], MASK_LAYERS[-1], classes),
    }


@register_model(
    NAME,
    task="detect",
    description="Mask R-CNN on fasterrcnn-small's CNN (torchvision's heads): CPU-sized, masks",
)
def maskrcnn_small(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 128,
    **options: Any,
) -> TorchvisionDetector:
    """Mask R-CNN (He et al. 2017) for small images, trained from scratch.

    Args:
        num_classes: ``K`` object classes (background not counted); ``None`` keeps the
            weights file's count, or 80 without one.
        weights: ``None`` (random init) or a visionkit weights file or checkpoint of this
            model.
        image_size: The longer side that images are resized to inside the model (the
            anchors suit 64-256 pixels).
        **options: Torchvision MaskRCNN options over ``fasterrcnn-small``'s small defaults
            (``rpn_batch_size_per_image``, ``box_batch_size_per_image``...).

    Returns:
        The detector, in train mode; :attr:`~TorchvisionDetector.makes_masks` is True.

    Raises:
        ConfigError: A bad ``image_size``, or an option MaskRCNN does not take, that the
            builder makes itself (``mask_head``...), or that
            :meth:`~visionkit.models.detect.Detector.set_thresholds` sets.
        WeightsError: ``weights`` is not a visionkit weights file of this model, or was
            trained for another ``num_classes``.
    """
    return build_small_rcnn(
        NAME,
        num_classes=num_classes,
        weights=weights,
        image_size=image_size,
        options=options,
        heads=_mask_heads,
    )
