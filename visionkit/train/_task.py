"""The trainer's plug-ins: a task (classification, detection, segmentation, distillation...)
and callbacks.

The trainer owns the loop: loaders, optimiser, schedule, mixed precision, EMA, checkpoints,
logging and processes. A task owns what differs between problems: how a batch is formed,
what loss a batch gives and how a model is scored. Any object with these members is a
task; nothing needs to inherit from :class:`Task`. A :class:`Callback` changes a run
between epochs (unfreezing layers, or :class:`CloseMosaic`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from visionkit.data.mosaic import Mosaic
from visionkit.errors import ConfigError

if TYPE_CHECKING:
    from visionkit.train.trainer import Trainer

__all__ = ["TASK_MEMBERS", "Callback", "CloseMosaic", "Task", "with_mosaic"]

TASK_MEMBERS = ("name", "fitness_key", "collate", "loss", "evaluate")
"""What an object needs to be a :class:`Task`; the trainer refuses one that lacks any."""


class Task(Protocol):
    """The plug-in a :class:`~visionkit.train.trainer.Trainer` trains with.

    Attributes:
        name: The run folder's task, e.g. ``"classify"`` (``runs/classify/<name>``).
        fitness_key: The key of :meth:`evaluate`'s result to maximise: it picks
            ``best.pt`` and drives early stopping (``"accuracy_top1"``, ``"map"``...).
        collate: Batches a list of dataset samples; ``None`` uses torch's default.
    """

    name: str
    fitness_key: str
    collate: Callable[[list[Any]], Any] | None

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch.

        Args:
            model: The model in training mode, possibly wrapped in
                ``DistributedDataParallel``: call it as ``model(...)`` so gradients are
                synchronised across processes.
            batch: What the loader gave (``collate`` of the samples), still on the CPU.
            device: Where the model is; move the batch there.

        Returns:
            The scalar loss to minimise, and its parts as floats for ``results.csv``
            (logged as ``train/<key>``, averaged over the epoch).
        """
        ...

    def evaluate(
        self, model: nn.Module, loader: Iterable[Any], device: torch.device
    ) -> Mapping[str, Any]:
        """Score ``model`` (in eval mode, gradients off) on this process's share of the
        validation data.

        Under torchrun every process evaluates its shard; the result must cover all
        shards (merge through ``torch.distributed``, as the metrics classes do), so every
        process returns the same values.

        Returns:
            Metric names to values: scalars go to ``results.csv`` as ``val/<key>``;
            everything (lists, matrices) goes to ``metrics.json``. Must hold
            :attr:`fitness_key`.
        """
        ...


class Callback:
    """Hooks into :meth:`Trainer.fit`; override what you need (e.g. to unfreeze layers).

    ``on_epoch_end`` runs after ``results.csv`` and ``metrics.json`` are written and before
    the checkpoint, so what it changes (``requires_grad``, optimiser groups) is saved.
    """

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (from 1) trains."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: Mapping[str, Any]) -> None:
        """After epoch ``epoch`` is evaluated; ``metrics`` are its validation metrics (empty
        for an epoch that ``TrainConfig.val=False`` leaves unvalidated)."""


class CloseMosaic(Callback):
    """Switch mosaic off for the last ``epochs`` epochs, so training ends on whole images
    at their real scale, the distribution the model meets in use (YOLOX, YOLOv8).

    Args:
        mosaic: A :class:`~visionkit.data.mosaic.Mosaic` (anything with ``close()``).
        epochs: Epochs at the end of the planned run (:attr:`Trainer.epochs`, re-planned
            under a time budget) that see whole images; below 1, a share of the planned
            epochs, and every epoch that overlaps it (0.3 of 10 epochs: the last 3; 0.3 of
            5: the last 2); 0 keeps mosaic to the end.

    Raises:
        ConfigError: ``epochs`` is negative.
    """

    def __init__(self, mosaic: Any, epochs: float) -> None:
        if epochs < 0:
            raise ConfigError(f"must be >= 0, got {epochs}", field="close_mosaic")
        self.mosaic, self.epochs = mosaic, epochs

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        closed = self.epochs if self.epochs >= 1 else self.epochs * trainer.epochs
        if epoch > trainer.epochs - closed:
            self.mosaic.close()


def with_mosaic(
    dataset: Any, imgsz: int, p: float, close_mosaic: float, **options: Any
) -> tuple[Any, list[Callback]]:
    """The training data and callbacks of a run with mosaic probability ``p``: ``dataset``
    in a :class:`~visionkit.data.mosaic.Mosaic` (``options``: its ``scale``, ``fill``,
    ``transforms``; at ``p`` 0 it passes every item through) and the :class:`CloseMosaic`
    that ends it.

    Raises:
        ConfigError: ``p`` outside ``[0, 1]`` (field ``mosaic``) or a negative
            ``close_mosaic``.
    """
    if not 0 <= p <= 1:
        raise ConfigError(f"must be in [0, 1], got {p!r}", field="mosaic")
    mosaic = Mosaic(dataset, imgsz, p=p, **options)
    return mosaic, [CloseMosaic(mosaic, close_mosaic)]
