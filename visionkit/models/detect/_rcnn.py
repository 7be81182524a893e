"""``rcnn``: R-CNN (Girshick et al., "Rich feature hierarchies for accurate object
detection and semantic segmentation", CVPR 2014).

Selective search proposes regions (:func:`~visionkit.models.detect._proposals.
selective_search`); each is cropped with a margin of context, warped to a fixed square and
classified by a CNN into ``K`` classes or background; a class-specific regressor moves each
box, and class-wise NMS removes duplicates. Unlike the paper (a CNN fine-tuned, then
per-class SVMs and ridge regressors on its features), one network learns the classes and
the box deltas together, as Fast R-CNN later did.

Training follows R-CNN's fine-tuning: an image's proposals plus its ground-truth boxes,
labelled with the class of a ground-truth box they overlap by IoU >= 0.5 and background
otherwise, sampled to a fixed number per image with a fixed share of positives. The
losses are cross-entropy (``loss_cls``) and smooth L1 on the positives' deltas
(``loss_box``), whose targets are R-CNN's parametrisation ``(dx, dy, dw, dh)`` relative to
the proposal, scaled by Fast R-CNN's ``(10, 10, 5, 5)``.

Selective search costs far more than the CNN on small images, so each model keeps the
proposals of the images it has seen, keyed by a hash of their 8-bit pixels: a training
image seen again unchanged (an epoch without augmentation) or an image evaluated twice is
searched once. The cache lives in the model instance (not in its state dict) and holds at
most ``proposal_cache`` images, the least recently used going first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.errors import ConfigError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Detector
from visionkit.models.detect._patch_classifier import (
    PatchClassifier,
    build_detector,
    crop_patches,
    normalize,
    plain_target,
    select_detections,
)
from visionkit.models.detect._proposals import selective_search
from visionkit.models.registry import register_model
from visionkit.models.weights import IMAGENET_MEAN, IMAGENET_STD
from visionkit.ops.boxes import box_iou

__all__ = ["RCNN", "rcnn"]

POSITIVE_IOU = 0.5
"""A proposal overlapping a ground-truth box by at least this takes its class."""

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
"""Scale of the ``(dx, dy, dw, dh)`` targets (Fast R-CNN's), so both losses weigh alike."""

_CHUNK = 1024  # proposals classified per forward pass at inference, to bound memory


class RCNN(Detector):
    """Region proposals, each warped and classified by a :class:`PatchClassifier`.

    Args:
        config: How the model was built.
        classifier: The patch classifier, with box regression.
        proposals: Most selective-search proposals per image.
        proposal_scale: Resize factor of the image for selective search (above 1 finds
            smaller objects, slower).
        context: Margin around each region that the classifier sees, as a fraction of its
            sides (R-CNN's context padding).
        batch_per_image: Regions classified per training image.
        positive_fraction: Most share of those that are positives.
        proposal_cache: Most images whose proposals are kept.
    """

    def __init__(
        self,
        config: ModelConfig,
        classifier: PatchClassifier,
        *,
        proposals: int,
        proposal_scale: float,
        context: float,
        batch_per_image: int,
        positive_fraction: float,
        proposal_cache: int,
    ) -> None:
        from torchvision.models.detection._utils import BoxCoder

        super().__init__(config)
        self.classifier = classifier
        self.proposals, self.proposal_scale, self.context = proposals, proposal_scale, context
        self.batch_per_image, self.positive_fraction = batch_per_image, positive_fraction
        self.box_coder = BoxCoder(BOX_CODER_WEIGHTS)
        self.proposal_cache = proposal_cache
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses ``{"loss_cls", "loss_box"}`` in train mode, else detections per image."""
        self.check_inputs(images, targets, self.training)
        if not self.training:
            return [self._detect(image) for image in images]
        patches, labels, box_targets = [], [], []
        for image, target in zip(images, targets, strict=True):
            regions, region_labels, matched = self._training_regions(image, target)
            regions = regions.to(image.device)
            patches.append(self._crop(image, regions))
            labels.append(region_labels.to(image.device))
            box_targets.append(self.box_coder.encode_single(matched.to(regions), regions))
        labels, box_targets = torch.cat(labels), torch.cat(box_targets)
        if not len(labels):  # no proposal and no object anywhere: nothing to learn from
            zero = self.classifier.cls_head.bias.sum() * 0
            return {"loss_cls": zero, "loss_box": zero}
        logits, deltas = self.classifier(torch.cat(patches))
        positive = torch.nonzero(labels < self.num_classes).squeeze(1)
        deltas = deltas.reshape(len(labels), self.num_classes, 4)[positive, labels[positive]]
        # Normalised by all sampled regions, as torchvision's fastrcnn_loss.
        loss_box = F.smooth_l1_loss(
            deltas, box_targets[positive], beta=1 / 9, reduction="sum"
        ) / max(1, len(labels))
        return {"loss_cls": F.cross_entropy(logits, labels), "loss_box": loss_box}

    def region_proposals(self, image: torch.Tensor) -> torch.Tensor:
        """Selective-search boxes of a ``[3, H, W]`` 0-1 image, from the cache when seen.

        Returns:
            ``float32`` ``[N, 4]`` xyxy boxes on the CPU.
        """
        pixels = image.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
        pixels = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
        digest = hashlib.blake2b(pixels.tobytes(), digest_size=16).digest()
        key = (digest, pixels.shape, self.proposals, self.proposal_scale)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        boxes = selective_search(pixels, max_proposals=self.proposals, scale=self.proposal_scale)
        self._cache[key] = boxes
        while len(self._cache) > self.proposal_cache:
            self._cache.popitem(last=False)
        return boxes

    def _crop(self, image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        return crop_patches(
            normalize(image, self), regions, self.classifier.patch_size, self.context
        )

    def _detect(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classify and regress one image's proposals: its post-processed detections."""
        regions = self.region_proposals(image).to(image.device)
        probs, boxes = [], []
        for chunk in regions.split(_CHUNK):
            logits, deltas = self.classifier(self._crop(image, chunk))
            probs.append(logits.softmax(1)[:, : self.num_classes])
            boxes.append(self.box_coder.decode_single(deltas, chunk).reshape(len(chunk), -1, 4))
        if not probs:
            probs = [torch.zeros(0, self.num_classes, device=image.device)]
            boxes = [torch.zeros(0, self.num_classes, 4, device=image.device)]
        return select_detections(
            torch.cat(boxes), torch.cat(probs), self.thresholds, tuple(image.shape[-2:])
        )

    def _training_regions(
        self, image: torch.Tensor, target: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled regions of one training image, their labels and matched boxes.

        Returns:
            ``float32`` ``[N, 4]`` regions, ``int64`` ``[N]`` labels (``K``: background) and
            ``[N, 4]`` the ground-truth box each overlaps most (itself for background, whose
            deltas are not trained), all on the CPU.
        """
        gt_boxes, gt_labels = plain_target(target)
        regions = torch.cat([self.region_proposals(image), gt_boxes])
        labels = torch.full((len(regions),), self.num_classes, dtype=torch.int64)
        matched = regions.clone()
        if len(gt_boxes):
            overlap, best = box_iou(regions, gt_boxes).max(1)
            positive = overlap >= POSITIVE_IOU
            labels[positive] = gt_labels[best[positive]]
            matched[positive] = gt_boxes[best[positive]]
        keep = self._sample(labels < self.num_classes)
        return regions[keep], labels[keep], matched[keep]

    def _sample(self, positive: torch.Tensor) -> torch.Tensor:
        """Indices of ``batch_per_image`` regions at most, ``positive_fraction`` of them at
        most positives, drawn at random (negatives fill the rest)."""
        pos, neg = torch.nonzero(positive).squeeze(1), torch.nonzero(~positive).squeeze(1)
        num_pos = min(len(pos), round(self.batch_per_image * self.positive_fraction))
        num_neg = min(len(neg), self.batch_per_image - num_pos)
        pos = pos[torch.randperm(len(pos))[:num_pos]]
        return torch.cat([pos, neg[torch.randperm(len(neg))[:num_neg]]])


@register_model(
    "rcnn",
    task="detect",
    description="R-CNN: selective search, a CNN on each warped region, box regression",
)
def rcnn(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 256,
    patch_size: int = 32,
    width: int = 16,
    proposals: int = 2000,
    proposal_scale: float = 1.0,
    context: float = 0.2,
    batch_per_image: int = 64,
    positive_fraction: float = 0.25,
    proposal_cache: int = 10000,
) -> RCNN:
    """An R-CNN detector for ``num_classes`` classes.

    Args:
        num_classes: ``K``, object classes (see :func:`build_detector`).
        weights: ``None`` or a visionkit weights file of this model.
        image_size: The input side it is meant for (recorded).
        patch_size: Side ``P`` that every region is warped to (multiple of 4, >= 24).
        width: Channels of the patch CNN's first convolutions.
        proposals: Most selective-search proposals per image (the paper used about 2000).
        proposal_scale: Resize factor of the image for selective search.
        context: Margin around each region that the classifier sees, as a fraction of its
            sides.
        batch_per_image: Regions classified per training image.
        positive_fraction: Most share of those that overlap an object (R-CNN: 25 %).
        proposal_cache: Most images whose proposals the model keeps.

    Raises:
        ConfigError: An option is out of range.
        WeightsError: See :func:`build_detector`.

    Example:
        >>> model = rcnn(num_classes=6, image_size=128).eval()  # doctest: +SKIP
        >>> detections = model([torch.rand(3, 128, 128)])  # doctest: +SKIP
    """
    if proposals < 1 or proposal_scale <= 0 or proposal_cache < 0 or context < 0:
        raise ConfigError(
            "proposals must be >= 1, proposal_scale > 0, proposal_cache and context >= 0",
            field="proposals",
        )
    if batch_per_image < 1 or not 0 <= positive_fraction <= 1:
        raise ConfigError(
            "batch_per_image must be >= 1 and positive_fraction in [0, 1]",
            field="batch_per_image",
        )
    options = {
        "image_size": image_size,
        "patch_size": patch_size,
        "width": width,
        "proposals": proposals,
        "proposal_scale": proposal_scale,
        "context": context,
        "batch_per_image": batch_per_image,
        "positive_fraction": positive_fraction,
        "proposal_cache": proposal_cache,
    }

    def make(classes: int) -> RCNN:
        config = ModelConfig(
            "rcnn", "detect", classes, image_size, IMAGENET_MEAN, IMAGENET_STD, weights, options
        )
        return RCNN(
            config,
            PatchClassifier(classes, patch_size, width, box_regression=True),
            proposals=proposals,
            proposal_scale=proposal_scale,
            context=context,
            batch_per_image=batch_per_image,
            positive_fraction=positive_fraction,
            proposal_cache=proposal_cache,
        )

    return build_detector(make, name="rcnn", weights=weights, num_classes=num_classes)
