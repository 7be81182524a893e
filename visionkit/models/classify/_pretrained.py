"""Pretrained-weights table of the classification models, kept apart from architecture code.

Torchvision entries name the enum member that ``weights="DEFAULT"`` stands for (resolved
through ``torchvision.models.get_model_weights``); the DeiT entries name their Hugging
Face checkpoints; the from-scratch models have none. Every entry also records the input
normalisation and size the weights expect, which :class:`ModelConfig` carries on.
"""

from __future__ import annotations

from visionkit.models.weights import PretrainedCfg

__all__ = ["PRETRAINED"]

PRETRAINED: dict[str, PretrainedCfg] = {
    "resnet18": PretrainedCfg("DEFAULT"),
    "resnet50": PretrainedCfg("DEFAULT"),
    "mobilenet_v3_small": PretrainedCfg("DEFAULT"),
    "mobilenet_v3_large": PretrainedCfg("DEFAULT"),
    "convnext_tiny": PretrainedCfg("DEFAULT"),
    "vit_b_16": PretrainedCfg("DEFAULT"),
    "deit-tiny": PretrainedCfg("hf:facebook/deit-tiny-patch16-224"),
    "deit-small": PretrainedCfg("hf:facebook/deit-small-patch16-224"),
    # Trained from scratch on small images (sklearn digits, the synthetic shapes).
    "cnn-small": PretrainedCfg(None, image_size=32),
    "vit-tiny": PretrainedCfg(None, image_size=32),
    "vit-small": PretrainedCfg(None, image_size=32),
}
