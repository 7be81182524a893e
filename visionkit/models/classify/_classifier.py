"""The classifier protocol: every classification model is a backbone, a linear head and a config.

:class:`ImageClassifier` follows timm's small backbone protocol (``forward_features``,
``forward_head``, ``reset_classifier``) plus an ordered list of backbone stages, so the
trainer's transfer strategies (linear probe, partial unfreezing of the last N stages, full
fine-tuning), LoRA and distillation are written once for torchvision, transformers and
visionkit's own models. :class:`ModelConfig` is the JSON-able record that a checkpoint
stores to rebuild the model with :func:`~visionkit.models.create_model`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models._config import ModelConfig

__all__ = ["ImageClassifier", "ModelConfig"]


class ImageClassifier(nn.Module):
    """A backbone that pools an image to a feature vector, and a linear head on top.

    ``[B, 3, H, W]`` normalised images -> ``backbone`` -> features ``[B, D]`` ->
    dropout -> ``head`` (``nn.Linear(D, C)``) -> logits ``[B, C]``.

    Args:
        backbone: Maps ``[B, 3, H, W]`` to pooled features ``[B, feature_dim]``.
        head: ``nn.Linear(feature_dim, num_classes)``.
        config: How the model was built; ``num_classes`` must match ``head``.
        stage_names: Dotted names of ``backbone`` submodules from input to output that
            together hold every backbone parameter (``partial:N`` unfreezes the last N).
        drop_rate: Dropout on the features before the head (pre-logits dropout).

    Attributes:
        feature_dim: ``D``, the size of the pooled features.
        num_classes: ``C``, the number of logits.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear,
        config: ModelConfig,
        stage_names: tuple[str, ...],
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if head.out_features != config.num_classes:
            raise ConfigError(
                f"head has {head.out_features} outputs but the config {config.num_classes}",
                field="num_classes",
            )
        self.backbone = backbone
        self.head_drop = nn.Dropout(drop_rate)
        self.head = head
        self.feature_dim = head.in_features
        self.config = config
        self.stage_names = tuple(stage_names)
        self.stages()  # every name must resolve now, not at the first partial fine-tune

    @property
    def num_classes(self) -> int:
        """``C``, the number of logits (the head's outputs)."""
        return self.head.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, D]`` of images ``[B, 3, H, W]`` (pre-logits, no dropout)."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of features ``[B, D]`` (dropout in train mode, then the head)."""
        return self.head(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of normalised images ``[B, 3, H, W]``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a new ``nn.Linear(D, num_classes)`` with zero bias.

        The new head sits on the old head's device and dtype, and ``config.num_classes``
        follows it, so a checkpoint saved afterwards rebuilds the right shape.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(
                f"num_classes must be a positive int, got {num_classes!r}", field="num_classes"
            )
        old = self.head.weight
        self.head = nn.Linear(self.feature_dim, num_classes, device=old.device, dtype=old.dtype)
        nn.init.zeros_(self.head.bias)
        self.config = dataclasses.replace(self.config, num_classes=num_classes, names=None)

    def stages(self) -> list[nn.Module]:
        """The backbone stages named by :attr:`stage_names`, from input to output."""
        try:
            return [self.backbone.get_submodule(name) for name in self.stage_names]
        except AttributeError as error:
            raise ConfigError(
                f"a stage name does not resolve: {error}", field="stage_names"
            ) from None
