"""Training losses: what a model's parameters are fitted to minimise.

The detection losses, the segmentation losses on class shares (Dice, soft
cross-entropy) and the set matcher are defined in
:mod:`visionkit.ops.losses` and :mod:`visionkit.ops.matching`, where the detectors (which
compute their loss inside ``forward`` in train mode) can import them; they are re-exported
here for users of the training API.

Example:
    >>> import torch
    >>> from visionkit.train.losses import giou_loss
    >>> giou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    tensor([1.0794])
"""

from visionkit.ops.losses import (
    ciou_loss,
    class_shares,
    dice_loss,
    diou_loss,
    giou_loss,
    sigmoid_focal_loss,
    soft_cross_entropy,
    soft_dice_loss,
    varifocal_loss,
)
from visionkit.ops.matching import HungarianMatcher, hungarian_match

__all__ = [
    "HungarianMatcher",
    "ciou_loss",
    "class_shares",
    "dice_loss",
    "diou_loss",
    "giou_loss",
    "hungarian_match",
    "sigmoid_focal_loss",
    "soft_cross_entropy",
    "soft_dice_loss",
    "varifocal_loss",
]
