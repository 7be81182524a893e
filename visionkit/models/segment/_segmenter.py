"""The semantic-segmenter contract: normalised images in, per-pixel class logits out.

Every ``segment`` registry entry is a :class:`SemanticSegmenter`: ``[B, 3, H, W]`` images
normalised with ``config.mean``/``config.std`` (as
:func:`~visionkit.data.transforms.segmentation_transforms` makes them) map to logits
``[B, C, H, W]`` at the input's own size, background being class 0 when the data set has
one. The trainer, the losses and the metrics are written once against this contract.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.models._config import ModelConfig

__all__ = ["SemanticSegmenter", "resize_logits"]


class SemanticSegmenter(nn.Module):
    """Base of semantic segmentation models: holds the config and checks the contract.

    Subclasses implement :meth:`forward_logits`, which may return logits at a lower
    resolution; :meth:`forward` brings them to the input size with bilinear interpolation.

    Args:
        config: How the model was built (``task="segment"``, ``num_classes`` = ``C``).

    Attributes:
        config: The :class:`~visionkit.models.ModelConfig`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def num_classes(self) -> int:
        """``C``, the number of per-pixel logits."""
        return self.config.num_classes

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, h, w]`` of images ``[B, 3, H, W]``, at any resolution."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, at_input_size: bool = True) -> torch.Tensor:
        """Logits ``[B, C, H, W]`` of normalised images ``[B, 3, H, W]``, at input size.

        ``at_input_size=False`` returns :meth:`forward_logits`' own resolution instead: a
        training loss computed there, against each cell's class shares, skips upsampling
        and a softmax over every pixel (through ``DistributedDataParallel`` as well, which
        passes keyword arguments on).
        """
        logits = self.forward_logits(x)
        return resize_logits(logits, x.shape[-2:]) if at_input_size else logits


def resize_logits(logits: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``logits`` ``[B, C, h, w]`` bilinearly resized to ``size`` (unchanged when equal)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
