"""DeiT (Touvron et al. 2021) through transformers: ``deit-tiny`` and ``deit-small``.

With ``weights=None`` the encoder is built offline from a ``ViTConfig`` of DeiT's sizes
(``config_overrides`` changes any field, so tests build a tiny one); with
``weights="hf:<repo-id-or-folder>"`` it comes from ``from_pretrained``, and the
checkpoint's ImageNet classifier becomes the head when it has one. The features are the
CLS token after the final norm, exactly what ``ViTForImageClassification`` classifies,
and the positional embedding is interpolated for inputs of another size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models._hub import hf_from_pretrained
from visionkit.models.classify._build import (
    DEFAULT_NUM_CLASSES,
    build_classifier,
    make_config,
    register_classifier,
)
from visionkit.models.classify._classifier import ImageClassifier
from visionkit.models.classify._pretrained import PRETRAINED
from visionkit.models.weights import WeightsSource

__all__ = ["HFViTBackbone", "deit_small", "deit_tiny"]

_SIZES = {
    "deit-tiny": {
        "hidden_size": 192,
        "num_hidden_layers": 12,
        "num_attention_heads": 3,
        "intermediate_size": 768,
    },
    "deit-small": {
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
    },
}


class HFViTBackbone(nn.Module):
    """A transformers ViT or DeiT encoder: images ``[B, 3, H, W]`` -> CLS token ``[B, D]``.

    Args:
        model: A ``ViTModel`` or ``DeiTModel`` built without its pooler.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The CLS token after the final norm (positions interpolated for other sizes)."""
        return self.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]

    def stage_names(self) -> tuple[str, ...]:
        """Embeddings, each encoder layer, final norm, from input to output."""
        # transformers 5 keeps the layers at ``layers``; earlier releases at ``encoder.layer``.
        layers = "layers" if hasattr(self.model, "layers") else "encoder.layer"
        count = len(self.model.get_submodule(layers))
        return (
            "model.embeddings",
            *(f"model.{layers}.{i}" for i in range(count)),
            "model.layernorm",
        )


def _build_deit(
    name: str,
    num_classes: int | None,
    weights: str | None,
    image_size: int,
    config_overrides: dict[str, Any] | None,
) -> ImageClassifier:
    """Build DeiT ``name`` from its sizes, or from an ``hf:`` checkpoint."""
    overrides = dict(config_overrides or {})
    if not all(isinstance(key, str) for key in overrides):
        raise ConfigError(
            "config_overrides must map ViTConfig field names to values", field="config_overrides"
        )
    options = {"image_size": image_size, "config_overrides": overrides}

    def wrap(model: nn.Module, head: nn.Linear) -> ImageClassifier:
        backbone = HFViTBackbone(model)
        config = make_config(name, head.out_features, image_size, weights, options)
        return ImageClassifier(backbone, head, config, backbone.stage_names())

    def make(classes: int) -> ImageClassifier:
        from transformers import ViTConfig, ViTModel

        fields = {"image_size": image_size, "patch_size": 16, **_SIZES[name], **overrides}
        model = ViTModel(ViTConfig(**fields), add_pooling_layer=False)
        return wrap(model, nn.Linear(model.config.hidden_size, classes))

    def from_hub(source: WeightsSource) -> ImageClassifier:
        from transformers import AutoModelForImageClassification

        loaded, info = hf_from_pretrained(
            source.location,
            AutoModelForImageClassification.from_pretrained,
            output_loading_info=True,
            **overrides,
        )
        loaded.float()
        head = loaded.classifier
        if not isinstance(head, nn.Linear) or any(
            key.startswith("classifier.") for key in info["missing_keys"]
        ):  # a bare encoder (or a distilled two-head DeiT): start a new head
            head = nn.Linear(loaded.config.hidden_size, DEFAULT_NUM_CLASSES)
        # from_pretrained returns eval mode; every builder returns a fresh module's train mode.
        return wrap(loaded.base_model, head).train()

    return build_classifier(
        make,
        model_name=name,
        weights=weights,
        num_classes=num_classes,
        pretrained={"hf": from_hub},
    )


@register_classifier(
    "deit-tiny", "DeiT-Ti/16 (transformers), 5.7 M parameters, ImageNet-1k weights"
)
def deit_tiny(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["deit-tiny"].image_size,
    config_overrides: dict[str, Any] | None = None,
) -> ImageClassifier:
    """DeiT-Tiny: 12 layers of width 192, 3 heads, 16-pixel patches; 192 features.

    Args:
        num_classes: Classes of the head (see :func:`~visionkit.models.create_model`).
        weights: ``None``, ``"hf:<repo-id-or-folder>"`` or a visionkit weights file.
        image_size: Input side; sets the position grid of a new encoder.
        config_overrides: ``ViTConfig`` fields to change (``num_hidden_layers``...).
    """
    return _build_deit("deit-tiny", num_classes, weights, image_size, config_overrides)


@register_classifier("deit-small", "DeiT-S/16 (transformers), 22 M parameters, ImageNet-1k weights")
def deit_small(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = PRETRAINED["deit-small"].image_size,
    config_overrides: dict[str, Any] | None = None,
) -> ImageClassifier:
    """DeiT-Small: 12 layers of width 384, 6 heads, 16-pixel patches; 384 features.

    Args: as :func:`deit_tiny`.
    """
    return _build_deit("deit-small", num_classes, weights, image_size, config_overrides)
