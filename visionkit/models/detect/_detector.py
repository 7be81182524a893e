"""The detector contract that every ``detect`` registry entry keeps.

torchvision's detection contract, with class indices ``0..K-1`` at the interface (the
datasets' indices; a torchvision model's background index 0 is hidden by its adapter):

- ``model(images, targets)`` in train mode: ``images`` a list of ``float32`` ``[3, H, W]``
  tensors in 0-1 (sizes may differ), ``targets`` a list of dicts with ``"boxes"``
  (``float32`` ``[N, 4]`` xyxy absolute pixels) and ``"labels"`` (``int64`` ``[N]``);
  returns a dict of scalar loss tensors whose sum is the training loss.
- ``model(images)`` in eval mode: a list (one per image) of dicts with ``"boxes"``
  (xyxy pixels of that input image), ``"scores"``, ``"labels"`` (``0..K-1``) and, for
  instance segmenters, ``"masks"`` (``float32`` ``[N, 1, H, W]`` in 0-1).

Each model normalises its own input, and keeps its post-processing settings in
:attr:`Detector.thresholds`, which the API sets from ``conf``, ``iou`` and ``max_det``
(low ``conf`` to measure mAP, higher to draw predictions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models._config import ModelConfig

__all__ = ["Detector", "Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """Post-processing of a detector's eval-mode output.

    Attributes:
        conf: Smallest score kept.
        iou: IoU above which non-maximum suppression removes the lower-scored box of a
            class.
        max_det: Most detections kept per image, highest scores first.
    """

    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 300

    def __post_init__(self) -> None:
        if not 0 <= self.conf <= 1:
            raise ConfigError(f"must be in [0, 1], got {self.conf}", field="conf")
        if not 0 < self.iou <= 1:
            raise ConfigError(f"must be in (0, 1], got {self.iou}", field="iou")
        if isinstance(self.max_det, bool) or not isinstance(self.max_det, int) or self.max_det < 1:
            raise ConfigError(f"must be a positive int, got {self.max_det!r}", field="max_det")


class Detector(nn.Module):
    """Base of every detector: the config, the class count and the post-processing settings.

    Subclasses implement ``forward(images, targets=None)`` as the module docs say, and
    :meth:`_apply_thresholds` when their post-processing lives in wrapped modules (a
    torchvision model's ``roi_heads``).

    Args:
        config: How the model was built (task ``"detect"``).

    Attributes:
        uses_mosaic: Whether training defaults to mosaic augmentation for this family
            (single-shot detectors, which see many small objects per batch that way).
    """

    uses_mosaic: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.task != "detect":
            raise ConfigError(f"a detector's config has task 'detect', not {config.task!r}")
        self.config = config
        self.thresholds = Thresholds()

    @property
    def num_classes(self) -> int:
        """``K``, the object classes (background not counted)."""
        return self.config.num_classes

    @property
    def makes_masks(self) -> bool:
        """Whether this is an instance segmenter: its eval output has ``"masks"`` and its
        training targets need them."""
        return False

    def set_thresholds(
        self, conf: float | None = None, iou: float | None = None, max_det: int | None = None
    ) -> Thresholds:
        """Change the post-processing settings given (the others stay); returns the new ones."""
        changes = {"conf": conf, "iou": iou, "max_det": max_det}
        self.thresholds = dataclasses.replace(
            self.thresholds, **{k: v for k, v in changes.items() if v is not None}
        )
        self._apply_thresholds(self.thresholds)
        return self.thresholds

    def _apply_thresholds(self, thresholds: Thresholds) -> None:
        """Push ``thresholds`` into wrapped modules; nothing to do when ``forward`` reads them."""

    def set_loss_gains(self, **gains: float) -> None:
        """Weigh the training loss's terms by name (``yolo``: ``cls``, ``box`` and ``dfl``,
        as Ultralytics' training settings); the others take the family's defaults.

        Raises:
            ConfigError: A name this family's loss does not weigh (any name, for a family
                whose loss is its library's own).
        """
        if gains:
            raise ConfigError(
                f"{self.config.name}'s loss has no gains to set", field=next(iter(gains))
            )

    @staticmethod
    def check_inputs(
        images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None, training: bool
    ) -> None:
        """Refuse inputs outside the contract with one clear error (not a shape traceback).

        Raises:
            ConfigError: ``images`` is not a list of ``[3, H, W]`` tensors, or train mode
                lacks one target per image.
        """
        if not isinstance(images, (list, tuple)) or not all(
            isinstance(i, torch.Tensor) and i.dim() == 3 and i.shape[0] == 3 for i in images
        ):
            raise ConfigError("a detector takes a list of [3, H, W] image tensors", field="images")
        if training and (targets is None or len(targets) != len(images)):
            raise ConfigError(
                "in train mode a detector takes one target dict per image", field="targets"
            )
