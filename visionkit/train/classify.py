"""The classification task: cross-entropy training, scored by top-k accuracy and friends.

Batches are ``(images, labels)``: float ``[B, 3, H, W]`` images (as
:func:`visionkit.data.transforms.classification_transforms` makes them) and int64 ``[B]``
class indices, as :class:`visionkit.data.datasets.ClassificationDataset` gives them; the
model maps images to logits ``[B, C]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

from visionkit.errors import ConfigError, DataError
from visionkit.metrics.classification import ClassificationMetrics
from visionkit.train.distributed import all_reduce_sum

__all__ = ["ClassificationTask", "images_and_labels"]


class ClassificationTask:
    """Image classification for :class:`~visionkit.train.trainer.Trainer`.

    The loss is cross-entropy with optional label smoothing (Szegedy et al., "Rethinking
    the Inception Architecture", 2016); evaluation reports the validation ``loss`` and
    every :class:`~visionkit.metrics.classification.ClassificationMetrics` key, merged over
    torchrun processes, and ``accuracy_top1`` is the fitness.

    Args:
        num_classes: Number of classes ``C``.
        label_smoothing: Probability mass spread evenly over all classes, in ``[0, 1)``;
            must equal the run's ``TrainConfig.label_smoothing``.
        top_k: The ``k`` of the top-k accuracies (those above ``C`` are skipped).

    Example:
        >>> task = ClassificationTask(10, label_smoothing=0.1)
        >>> task.fitness_key
        'accuracy_top1'
    """

    name = "classify"
    fitness_key = "accuracy_top1"
    collate = None

    def __init__(
        self, num_classes: int, *, label_smoothing: float = 0.0, top_k: Sequence[int] = (1, 5)
    ) -> None:
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"must be in [0, 1), got {label_smoothing}", field="label_smoothing")
        ClassificationMetrics(num_classes, top_k=top_k)  # refuses bad num_classes and top_k now
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.top_k = tuple(top_k)

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy of the batch; ``{"loss": value}`` for the log."""
        images, labels = images_and_labels(batch, device)
        loss = self._cross_entropy(model(images), labels, "mean")
        return loss, {"loss": loss.item()}

    def evaluate(
        self, model: nn.Module, loader: Iterable[Any], device: torch.device
    ) -> dict[str, Any]:
        """Validation ``loss`` (per sample) and the classification metrics of ``loader``,
        over every process's shard."""
        metrics = ClassificationMetrics(self.num_classes, top_k=self.top_k)
        loss_and_count = torch.zeros(2, dtype=torch.float64)
        for batch in loader:
            images, labels = images_and_labels(batch, device)
            logits = model(images).float()
            loss = self._cross_entropy(logits, labels, "sum")
            loss_and_count += torch.tensor([loss.item(), len(labels)], dtype=torch.float64)
            metrics.update(logits, labels)
        total_loss, count = all_reduce_sum(loss_and_count).tolist()
        return {"loss": total_loss / count if count else float("nan"), **metrics.compute()}

    def _cross_entropy(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str
    ) -> torch.Tensor:
        return F.cross_entropy(
            logits, labels, reduction=reduction, label_smoothing=self.label_smoothing
        )


def images_and_labels(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a batch on ``device``, refusing integer images."""
    images, labels = batch
    if not images.is_floating_point():
        raise DataError(
            f"images are {images.dtype}, expected float; convert and normalise them "
            "(visionkit.data.transforms.classification_transforms does)",
            field="image",
        )
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
