"""The adapter that puts transformers' DETR-family detectors behind the :class:`Detector` contract.

- Inputs are resized inside the model: DETR keeps the aspect ratio (longer side
  ``image_size``), normalises with the config's mean and std and pads the batch with a
  ``pixel_mask``; RT-DETR resizes to an ``image_size`` square and feeds 0-1 pixels, as
  its image processor does.
- Train mode returns transformers' own Hungarian-matching losses, each term weighted as
  transformers weights it, so their sum is the model's ``loss``; targets go in as
  ``class_labels`` ``0..K-1`` and ``cxcywh`` boxes normalised by the image's own size
  (DETR's convention: padding does not move them).
- Eval mode decodes to xyxy pixels of each input image and applies the detector's
  :class:`Thresholds` (score, class-wise NMS, count).
"""

from __future__ import annotations

import re
from typing import ClassVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Detector
from visionkit.models.detect._targets import checked_target
from visionkit.ops.boxes import (
    batched_nms,
    box_convert,
    clip_boxes,
    denormalize_boxes,
    normalize_boxes,
)

__all__ = ["DetectionTransformer", "DetrDetector", "RTDetrDetector"]


class DetectionTransformer(Detector):
    """A transformers DETR-family model behind the :class:`Detector` contract.

    Args:
        model: The transformers ``...ForObjectDetection`` module.
        config: How it was built (``mean``/``std`` normalise the input).

    Attributes:
        square: Resize every image to an ``image_size`` square (no padding, no mask);
            otherwise keep the aspect ratio and pad the batch.
    """

    square: ClassVar[bool] = False

    def __init__(self, model: nn.Module, config: ModelConfig) -> None:
        super().__init__(config)
        self.model = model

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in train mode, detections in eval mode (see :mod:`._detector`).

        Args:
            images: ``float32`` ``[3, H, W]`` tensors in 0-1; sizes may differ.
            targets: Train mode: per image ``"boxes"`` ``[N, 4]`` xyxy pixels and
                ``"labels"`` ``int64`` ``[N]`` in ``0..K-1``.

        Returns:
            Train mode: the weighted loss terms (``loss_ce``, ``loss_bbox_0``...). Eval
            mode: per image ``"boxes"`` ``[M, 4]`` xyxy pixels, ``"scores"`` ``[M]``,
            ``"labels"`` ``[M]`` in ``0..K-1``.

        Raises:
            ConfigError: Inputs outside the contract.
        """
        self.check_inputs(images, targets, self.training)
        pixel_values, pixel_mask = self._batch(images)
        if self.training:
            labels = [self._labels(t, i, images[i]) for i, t in enumerate(targets)]
            output = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels)
            return self._losses(output.loss_dict)
        output = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        return [
            self._detections(logits, boxes, image.shape[-2:])
            for logits, boxes, image in zip(output.logits, output.pred_boxes, images, strict=True)
        ]

    def _batch(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Resized, normalised images ``[B, 3, H, W]`` and the mask of real pixels ``[B, H, W]``."""
        side = self.config.image_size
        mean = torch.tensor(self.config.mean, device=images[0].device).view(3, 1, 1)
        std = torch.tensor(self.config.std, device=images[0].device).view(3, 1, 1)
        resized = []
        for image in images:
            height, width = image.shape[-2:]
            scale = side / max(height, width)
            size = (side, side) if self.square else (round(height * scale), round(width * scale))
            pixels = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)
            resized.append((pixels[0] - mean) / std)
        if self.square:
            return torch.stack(resized), None
        height = max(r.shape[1] for r in resized)
        width = max(r.shape[2] for r in resized)
        batch = resized[0].new_zeros(len(resized), 3, height, width)
        mask = torch.zeros(len(resized), height, width, dtype=torch.long, device=batch.device)
        for i, pixels in enumerate(resized):
            batch[i, :, : pixels.shape[1], : pixels.shape[2]] = pixels
            mask[i, : pixels.shape[1], : pixels.shape[2]] = 1
        return batch, mask

    def _labels(
        self, target: dict[str, torch.Tensor], index: int, image: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """A target as transformers' loss wants it: cxcywh boxes in 0-1 of the image."""
        boxes, labels = checked_target(target, index, self.num_classes)
        height, width = image.shape[-2:]
        normalised = normalize_boxes(box_convert(boxes, "xyxy", "cxcywh"), width, height)
        return {"class_labels": labels, "boxes": normalised.to(image.device)}

    def _losses(self, loss_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss terms, weighted as transformers weights them into its ``loss``."""
        return dict(loss_dict)

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores, labels and query indices of one image's candidate detections."""
        raise NotImplementedError

    def _detections(
        self, logits: torch.Tensor, boxes: torch.Tensor, size: torch.Size
    ) -> dict[str, torch.Tensor]:
        """One image's queries as contract detections: xyxy pixels, thresholds applied."""
        height, width = int(size[0]), int(size[1])
        scores, labels, query = self._candidates(logits)
        xyxy = denormalize_boxes(box_convert(boxes[query], "cxcywh", "xyxy"), width, height)
        xyxy = clip_boxes(xyxy, height, width)
        keep = scores >= self.thresholds.conf
        xyxy, scores, labels = xyxy[keep], scores[keep], labels[keep]
        keep = batched_nms(xyxy, scores, labels, self.thresholds.iou)[: self.thresholds.max_det]
        return {"boxes": xyxy[keep], "scores": scores[keep], "labels": labels[keep]}


class DetrDetector(DetectionTransformer):
    """DETR: softmax class scores with a last "no object" class; aspect-keeping resize."""

    def _losses(self, loss_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Terms times DETR's coefficients (``_<i>``: a decoder layer's auxiliary copy)."""
        config = self.model.config
        weights = {
            "loss_ce": 1.0,
            "loss_bbox": config.bbox_loss_coefficient,
            "loss_giou": config.giou_loss_coefficient,
        }
        # cardinality_error is a logged count, not a loss: transformers leaves it out too.
        return {
            key: value * weights[re.sub(r"_\d+$", "", key)]
            for key, value in loss_dict.items()
            if re.sub(r"_\d+$", "", key) in weights
        }

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each query's best real class (the last logit is "no object")."""
        scores, labels = logits.softmax(-1)[:, :-1].max(-1)
        return scores, labels, torch.arange(len(logits), device=logits.device)


class RTDetrDetector(DetectionTransformer):
    """RT-DETR: sigmoid class scores, the top ``queries`` (query, class) pairs; square resize."""

    square = True

    def _candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The best (query, class) pairs, as many as there are queries (RT-DETR's decoding)."""
        queries, classes = logits.shape
        scores, index = logits.sigmoid().flatten().topk(queries)
        return scores, index % classes, index // classes
