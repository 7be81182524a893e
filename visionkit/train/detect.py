"""The detection task: a detector's own losses, scored by COCO mAP after every epoch.

Batches are ``(images, targets)`` lists as :func:`visionkit.data.datasets.collate_detection`
makes them from :class:`~visionkit.data.datasets.DetectionDataset` samples passed through
:func:`visionkit.data.transforms.detection_transforms` (or :class:`visionkit.data.mosaic.
Mosaic` when training). The model keeps the detector contract of
:mod:`visionkit.models.detect`: a loss dict in train mode, detections in eval mode.

Evaluation maps detections and ground truth back to each image's original pixels (the
evaluation pipeline only resizes and pads at the bottom right) and scores them with
:class:`~visionkit.metrics.detection.DetectionEvaluator`, with each object's original
``area``, so ``map_small``/``map_medium``/``map_large`` mean what they mean in COCO. For an
instance segmenter (Mask R-CNN) the masks are mapped back too (:func:`masks_in_original`)
and scored as well, under the COCO keys with the :data:`SEGM_PREFIX`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

from visionkit.data.datasets import collate_detection
from visionkit.data.transforms import eval_scale
from visionkit.errors import ConfigError, DataError
from visionkit.metrics.detection import DetectionConfusionMatrix, DetectionEvaluator
from visionkit.ops.boxes import box_convert
from visionkit.train.distributed import all_reduce_sum

__all__ = [
    "EVAL_CONF",
    "MASK_THRESHOLD",
    "SEGM_PREFIX",
    "DetectionTask",
    "coco_result_area",
    "masks_in_original",
    "segm_metrics",
    "to_device",
]

EVAL_CONF = 0.001
"""Score threshold while measuring mAP: low, so the precision-recall curve runs to its end
(the convention of COCO evaluations and Ultralytics' ``val``)."""

CONFUSION_CONF = 0.25
"""Score a detection needs to count in the confusion matrix (Ultralytics' convention)."""

MASK_THRESHOLD = 0.5
"""Probability at or above which a predicted mask pixel is foreground (Mask R-CNN's)."""

SEGM_PREFIX = "segm_"
"""Prefix of the mask metrics (``segm_map``, ``segm_map_50``...) beside the box metrics."""

_TARGET_KEYS = ("boxes", "labels", "masks")


class DetectionTask:
    """Object detection for :class:`~visionkit.train.trainer.Trainer`.

    The loss is the sum of the detector's loss dict (each part is logged as
    ``train/<name>``); evaluation reports COCO's ``map``, ``map_50``... (the fitness is
    ``map``, COCO's mAP@[.5:.95]) and a confusion matrix, merged over torchrun processes.
    With ``masks``, the COCO metrics of the instance masks follow as ``segm_map``,
    ``segm_map_50``... (:func:`segm_metrics`); the fitness stays the box ``map``, which
    every detector has, so runs of box and mask models rank alike.

    Args:
        num_classes: Object classes ``K`` of the model and dataset.
        imgsz: Side of the evaluation pipeline's square images, to map boxes back.
        max_det: Detections kept per image while measuring.
        masks: The model is an instance segmenter and the targets carry ``"masks"``.

    Example:
        >>> task = DetectionTask(6, imgsz=256)
        >>> task.fitness_key
        'map'
    """

    name = "detect"
    fitness_key = "map"
    collate = staticmethod(collate_detection)

    def __init__(
        self, num_classes: int, *, imgsz: int, max_det: int = 300, masks: bool = False
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"must be a positive int, got {num_classes!r}", field="num_classes")
        self.num_classes, self.imgsz, self.max_det = num_classes, imgsz, max_det
        self.masks = masks

    def loss(
        self, model: nn.Module, batch: Any, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of the detector's losses, and each part (and the sum) for the log."""
        images, targets = to_device(batch, device)
        parts = model(images, targets)
        total = torch.stack([value for value in parts.values()]).sum()
        return total, {"loss": total.item(), **{k: v.item() for k, v in parts.items()}}

    def evaluate(
        self, model: nn.Module, loader: Iterable[Any], device: torch.device
    ) -> dict[str, Any]:
        """COCO metrics and the confusion matrix (``[pred, true]``, background last) of
        ``loader``, over every process's shard.

        The model's post-processing settings are lowered to :data:`EVAL_CONF` and
        ``max_det`` while it runs and restored afterwards.
        """
        evaluator = DetectionEvaluator()
        segm = DetectionEvaluator(iou_type="segm") if self.masks else None
        confusion = DetectionConfusionMatrix(self.num_classes, conf=CONFUSION_CONF)
        kept = model.thresholds
        model.set_thresholds(conf=EVAL_CONF, max_det=self.max_det)
        try:
            for batch in loader:
                images, targets = to_device(batch, device)
                detections = [
                    _to_original(d, t, self.imgsz, self.masks)
                    for d, t in zip(model(images), targets, strict=True)
                ]
                truths = [_to_original(t, t, self.imgsz, self.masks) for t in targets]
                evaluator.update(detections, truths)
                if segm is not None:  # areas as pycocotools reads predictions.json
                    areas = [{**d, "area": coco_result_area(d["boxes"])} for d in detections]
                    segm.update(areas, truths)
                for det, truth in zip(detections, truths, strict=True):
                    confusion.update(
                        det["boxes"], det["scores"], det["labels"], truth["boxes"], truth["labels"]
                    )
        finally:
            model.set_thresholds(conf=kept.conf, iou=kept.iou, max_det=kept.max_det)
        matrix = all_reduce_sum(torch.from_numpy(confusion.matrix.astype(np.int64)))
        metrics = {**evaluator.compute(), "confusion_matrix": matrix.tolist()}
        return metrics if segm is None else {**metrics, **segm_metrics(segm.compute())}


def segm_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A ``segm`` evaluation's COCO metrics under :data:`SEGM_PREFIX` (``segm_map``...),
    to sit beside the box metrics; ``classes`` is left out, as the box metrics' own
    ``classes`` orders ``segm_map_per_class`` too (both see the same labels)."""
    return {f"{SEGM_PREFIX}{key}": value for key, value in metrics.items() if key != "classes"}


def coco_result_area(boxes: torch.Tensor) -> torch.Tensor:
    """The area that pycocotools gives each detection of a COCO results file written with
    its box (:meth:`~visionkit.structures.Detections.to_coco` writes one), masks or not:
    ``w * h`` of the ``xywh`` box, which decides the area range an unmatched detection
    counts in.

    Args:
        boxes: ``[N, 4]`` xyxy pixels, converted as ``to_coco`` converts them.

    Returns:
        ``float64`` ``[N]``.
    """
    sides = box_convert(boxes.float(), "xyxy", "xywh")[:, 2:].double()
    return sides[:, 0] * sides[:, 1]


def masks_in_original(masks: torch.Tensor, size: tuple[int, int], imgsz: int) -> torch.Tensor:
    """Instance masks on an evaluation-pipeline image, as masks of the image as read.

    The pipeline resized the image by :func:`~visionkit.data.transforms.eval_scale` and
    padded its bottom and right; this cuts the padding off and resizes back bilinearly, as
    boxes are divided back, then thresholds at :data:`MASK_THRESHOLD`. Binary masks (the
    targets) go the same way as probabilities of 0 and 1: that keeps the objects in place,
    where nearest-neighbour resizing shifts them by up to a pixel, and scores a prediction
    and its ground truth alike.

    Args:
        masks: ``[N, 1, S, S]`` or ``[N, S, S]``, ``S`` being ``imgsz``: probabilities in
            0-1 (a detector's output) or binary (bool or 0/1 integers).
        size: ``(height, width)`` of the image as read.
        imgsz: Side of the evaluation pipeline's square images.

    Returns:
        ``bool`` ``[N, height, width]`` on the CPU.
    """
    height, width = size
    sy, sx = eval_scale(height, width, imgsz)
    masks = masks.detach().cpu()
    masks = masks[:, 0] if masks.dim() == 4 else masks
    crop = masks[:, None, : round(height * sy), : round(width * sx)].float()
    if crop.shape[-2:] != (height, width):
        crop = F.interpolate(crop, (height, width), mode="bilinear", align_corners=False)
    return crop[:, 0] >= MASK_THRESHOLD


def to_device(batch: Any, device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``(images, targets)`` of a detection batch on ``device``, refusing integer images.

    Target tensors the detector uses (boxes, labels, masks) move; the rest (``image_id``,
    ``orig_size``, ``area``, ``iscrowd``) stays for evaluation.
    """
    images, targets = batch
    if any(not image.is_floating_point() for image in images):
        raise DataError(
            "images are integers, expected float 0-1; "
            "visionkit.data.transforms.detection_transforms converts them",
            field="image",
        )
    moved = [
        {k: v.to(device, non_blocking=True) if k in _TARGET_KEYS else v for k, v in t.items()}
        for t in targets
    ]
    return [image.to(device, non_blocking=True) for image in images], moved


def _to_original(
    boxes_of: dict[str, Any], target: dict[str, Any], imgsz: int, masks: bool = False
) -> dict[str, Any]:
    """``boxes_of`` (detections or ground truth) as plain CPU tensors in the original image's
    pixels, with the target's ``image_id``, ``area`` and ``iscrowd`` for ground truth, and
    with ``masks`` its masks (:func:`masks_in_original`)."""
    height, width = target["orig_size"]
    sy, sx = eval_scale(height, width, imgsz)
    scale = torch.tensor([sx, sy, sx, sy])
    out = {
        "boxes": (boxes_of["boxes"].detach().float().cpu() / scale).as_subclass(torch.Tensor),
        "labels": boxes_of["labels"].detach().cpu(),
        "image_id": target["image_id"],
    }
    if "scores" in boxes_of:
        out["scores"] = boxes_of["scores"].detach().float().cpu()
    else:
        out["iscrowd"] = target["iscrowd"]
        out["area"] = target["area"]
    out["boxes"][:, 0::2] = out["boxes"][:, 0::2].clamp(0, width)
    out["boxes"][:, 1::2] = out["boxes"][:, 1::2].clamp(0, height)
    if masks:
        out["masks"] = masks_in_original(boxes_of["masks"], (height, width), imgsz)
    return out
