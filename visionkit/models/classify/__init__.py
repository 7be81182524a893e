"""Image classification models, all behind the :class:`ImageClassifier` protocol.

Importing this package registers every family with the model registry: torchvision's
ResNet, MobileNetV3, ConvNeXt and ViT-B/16, DeiT through transformers, and the
from-scratch ``cnn-small``, ``vit-tiny`` and ``vit-small``.
"""

from visionkit.models.classify import _cnn, _deit, _torchvision, _vit  # noqa: F401  (registers)
from visionkit.models.classify._classifier import ImageClassifier, ModelConfig

__all__ = ["ImageClassifier", "ModelConfig"]
