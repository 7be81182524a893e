"""The semantic segmentation task: per-pixel cross-entropy and Dice, scored by mIoU.

Batches are ``(images, masks)``: float ``[B, 3, S, S]`` images normalised as
:func:`visionkit.data.transforms.segmentation_transforms` makes them and int64 ``[B, S, S]``
class-index masks (255 = :data:`~visionkit.data.records.IGNORE_INDEX`, padding included),
from :class:`~visionkit.data.datasets.SegmentationDataset` samples. The model keeps the
contract of :mod:`visionkit.models.segment`: logits ``[B, C, S, S]`` at the input size.

Training computes the loss where a
:class:`~visionkit.models.segment.SemanticSegmenter` predicts: logits at a quarter of the
input size (``unet``, ``deeplabv3plus``, SegFormer) meet each of their cells' class shares
(:func:`~visionkit.ops.losses.class_shares`) instead of being upsampled to every pixel.
That is the same loss for a model whose logits are at input size, and for the others it
skips the upsampling and a softmax over every pixel: ``unet``'s training step at 256 px
takes half the time. Validation scores the upsampled logits, in the images' pixels.

For validation, :class:`WithOriginalMasks` adds each image's mask as read; the batch is
then ``(images, masks, originals)`` and the logits are mapped back to the original pixels
(the evaluation pipeline only resizes and pads at the bottom right, see
:func:`to_original_size`) and scored there, so an epoch's ``miou`` is the number that
``Model.val`` reports for the same weights, whatever the images' sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn
from torch.utils.data import Dataset

from visionkit.data.datasets import Transform
from visionkit.data.records import IGNORE_INDEX
from visionkit.data.transforms import eval_scale
from visionkit.errors import ConfigError, DataError
from visionkit.metrics.segmentation import SegmentationMetrics
from visionkit.models import SemanticSegmenter
from visionkit.ops.losses import class_shares, soft_cross_entropy, soft_dice_loss
from visionkit.train.distributed import all_reduce_sum, unwrap

__all__ = [
    "LOSSES",
    "SegmentationTask",
    "WithOriginalMasks",
    "class_indices",
    "collate_segmentation",
    "images_and_masks",
    "to_original_size",
]

LOSSES = ("ce", "dice", "ce+dice")
"""The training losses :class:`SegmentationTask` knows: cross-entropy, soft Dice, their sum."""


def collate_segmentation(samples: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Stack ``(image, mask)`` samples into ``[B, 3, S, S]`` and ``[B, S, S]``; original
    masks (:class:`WithOriginalMasks`), which differ in size, stay a list."""
    images = torch.stack([sample[0] for sample in samples]).as_subclass(torch.Tensor)
    masks = torch.stack([sample[1] for sample in samples]).as_subclass(torch.Tensor)
    if len(samples[0]) == 2:
        return images, masks
    return images, masks, [sample[2] for sample in samples]


def images_and_masks(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, masks)`` of a batch on ``device``; integer images or non-integer masks
    are refused."""
    images, masks = batch[0], batch[1]
    if not images.is_floating_point():
        raise DataError(
            f"images are {images.dtype}, expected float; convert and normalise them "
            "(visionkit.data.transforms.segmentation_transforms does)",
            field="image",
        )
    if masks.is_floating_point():
        raise DataError(f"masks are {masks.dtype}, expected class indices", field="mask")
    return images.to(device, non_blocking=True), masks.to(device, non_blocking=True).long()


class SegmentationTask:
    """Semantic segmentation for :class:`~visionkit.train.trainer.Trainer`.

    The default loss is ``"ce+dice"``, the sum of per-pixel cross-entropy and soft Dice
    (:func:`~visionkit.ops.losses.dice_loss`). Cross-entropy gives every pixel a smooth,
    well-scaled gradient from the first step, but it weighs classes by their pixel count,
    so on scenes that are mostly background small objects learn slowly; Dice is a
    per-class overlap ratio, so every class present counts alike, which is what mIoU
    measures, but alone it trains erratically from random logits. Their sum keeps the
    good of both (the combination of nnU-Net and most medical and remote-sensing
    recipes). Pixels labelled 255 count in neither term.

    Evaluation reports the validation ``loss`` (per image) and every
    :class:`~visionkit.metrics.segmentation.SegmentationMetrics` key (``miou``,
    ``mdice``, ``mboundary_iou``, ``pixel_accuracy``, ``mean_accuracy``, the per-class
    values and the confusion matrix ``[true, pred]``), merged over torchrun processes;
    the fitness is ``miou``.

    Args:
        num_classes: Classes ``C`` of the logits, background included.
        loss: ``"ce"``, ``"dice"`` or ``"ce+dice"``.
        label_smoothing: Cross-entropy label smoothing in ``[0, 1)``; must equal the
            run's ``TrainConfig.label_smoothing``.
        ignore_index: Mask value that counts nowhere.

    Raises:
        ConfigError: An unknown loss, a bad class count or label smoothing.

    Example:
        >>> task = SegmentationTask(7)
        >>> task.fitness_key, task.loss_name
        ('miou', 'ce+dice')
    """

    name = "segment"
    fitness_key = "miou"
    collate = staticmethod(collate_segmentation)

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "ce+dice",
        label_smoothing: float = 0.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; expected one of {LOSSES}", field="loss")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"must be in [0, 1), got {label_smoothing}", field="label_smoothing")
        SegmentationMetrics(num_classes, ignore_index=ignore_index)  # refuses bad values now
        self.num_classes, self.loss_name = num_classes, loss
        self.label_smoothing, self.ignore_index = label_smoothing, ignore_index

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss; its parts (``ce``, ``dice``) and their sum ``loss`` for the log."""
        images, masks = images_and_masks(batch, device)
        if isinstance(unwrap(model), SemanticSegmenter):
            logits = model(images, at_input_size=False)
        else:
            logits = model(images)
        parts = self._parts(logits.float(), masks)  # losses in float32 under autocast
        total = torch.stack(list(parts.values())).sum()
        return total, {"loss": total.item(), **{k: v.item() for k, v in parts.items()}}

    def evaluate(
        self, model: nn.Module, loader: Iterable[Any], device: torch.device
    ) -> dict[str, Any]:
        """Validation ``loss`` and the segmentation metrics of ``loader``, over every
        process's shard; in original pixels when the batches carry the original masks."""
        metrics = SegmentationMetrics(self.num_classes, ignore_index=self.ignore_index)
        loss_and_count = torch.zeros(2, dtype=torch.float64)
        for batch in loader:
            images, masks = images_and_masks(batch, device)
            logits = model(images).float()
            loss = torch.stack(list(self._parts(logits, masks).values())).sum()
            loss_and_count += torch.tensor([loss.item() * len(images), len(images)])
            if len(batch) == 2:
                metrics.update(class_indices(logits, dim=1), masks)
                continue
            for scores, original in zip(logits, batch[2], strict=True):
                found = class_indices(to_original_size(scores, tuple(original.shape)), dim=0)
                metrics.update(found[None], original[None])
        total, count = all_reduce_sum(loss_and_count).tolist()
        return {"loss": total / count if count else float("nan"), **metrics.compute()}

    def _parts(self, logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms that :attr:`loss_name` asks for, against each logit cell's class
        shares (:func:`~visionkit.ops.losses.class_shares`; one-hot at the masks' size)."""
        shares = class_shares(masks, self.num_classes, logits.shape[-2:], self.ignore_index)
        parts, terms = {}, self.loss_name.split("+")
        if "ce" in terms:
            parts["ce"] = soft_cross_entropy(logits, shares, self.label_smoothing)
        if "dice" in terms:
            parts["dice"] = soft_dice_loss(logits, shares)
        return parts


class WithOriginalMasks(Dataset):
    """A segmentation dataset whose samples also carry the mask as read.

    Args:
        dataset: Gives ``(image, mask)`` untransformed (its ``transforms`` unset), e.g. a
            :class:`~visionkit.data.datasets.SegmentationDataset`.
        transforms: The evaluation pipeline, applied to ``(image, mask)`` together.

    Returns (``__getitem__``):
        ``(image, mask, original)``: the transformed pair and the int64 ``[H, W]`` mask of
        the image as read, for :func:`to_original_size`.
    """

    def __init__(self, dataset: Dataset, transforms: Transform) -> None:
        self.dataset, self.transforms = dataset, transforms

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, torch.Tensor]:
        image, mask = self.dataset[index]
        return (*self.transforms(image, mask), mask.as_subclass(torch.Tensor))


def to_original_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Logits of an evaluation-pipeline image, mapped back to the image as read.

    The pipeline (:func:`~visionkit.data.transforms.segmentation_transforms` with
    ``train=False``) resizes the longer side to ``S`` and pads the bottom and right: the
    padding is cut off and the rest resized bilinearly to ``size``.

    Args:
        logits: ``[C, S, S]`` scores of one image.
        size: ``(height, width)`` of the image as read.

    Returns:
        ``[C, height, width]`` float scores.
    """
    height, width = size
    side = logits.shape[-1]
    sy, sx = eval_scale(height, width, side)
    kept = logits[None, :, : round(sy * height), : round(sx * width)].float()
    return F.interpolate(kept, size=(height, width), mode="bilinear", align_corners=False)[0]


def class_indices(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """The index of the largest score along the class dimension ``dim``: ``argmax``'s
    answer, through ``max``, which a CPU computes about 10x faster along a dimension that
    is not the innermost (one contiguous ``[7, 256, 256]`` map: 0.9 ms instead of 11)."""
    return scores.max(dim=dim).indices
