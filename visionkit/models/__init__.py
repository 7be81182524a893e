"""Models: the registry, the weights resolver and the model families.

Importing this package registers every model family (torch is imported; torchvision and
transformers only when a model is built), so ``create_model`` and ``list_models`` see
them all::

    from visionkit.models import create_model
    model = create_model("resnet18", num_classes=10, weights="DEFAULT")
"""

from visionkit.models import classify, detect, foundation, segment
from visionkit.models._config import ModelConfig
from visionkit.models.classify import ImageClassifier
from visionkit.models.detect import Detector, Thresholds
from visionkit.models.registry import (
    ModelEntry,
    create_model,
    list_models,
    model_info,
    register_model,
)
from visionkit.models.segment import SemanticSegmenter
from visionkit.models.weights import load_weights, read_state_file

__all__ = [
    "Detector",
    "ImageClassifier",
    "ModelConfig",
    "ModelEntry",
    "Thresholds",
    "classify",
    "detect",
    "foundation",
    "create_model",
    "list_models",
    "model_info",
    "load_weights",
    "read_state_file",
    "register_model",
    "segment",
    "SemanticSegmenter",
]
