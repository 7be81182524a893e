"""Semantic segmenters, all behind the contract of :mod:`visionkit.models.segment._segmenter`.

Importing this package registers every segmentation family with the model registry.
"""

from visionkit.models.segment import (
    _deeplab,  # noqa: F401  (registers)
    _fcn,  # noqa: F401  (registers)
    _segformer,  # noqa: F401  (registers)
    _segmenter_vit,  # noqa: F401  (registers)
    _torchvision,  # noqa: F401  (registers)
    _unet,  # noqa: F401  (registers)
)
from visionkit.models.segment._segmenter import SemanticSegmenter, resize_logits

__all__ = ["SemanticSegmenter", "resize_logits"]
