"""``sliding-window``: a patch classifier scanned over an image pyramid.

The first detection method of the lectures: classify every window of a few sizes and
aspect ratios as one of ``K`` classes or background, keep the windows that score, and
remove duplicates with class-wise NMS. There is no box regression, so a box is always one
of the scanned windows.

Training classifies patches cut out of each image with ``roi_align``: positives are the
ground-truth boxes, slightly jittered, and negatives are windows overlapping every
ground-truth box by IoU < 0.3: half mined from a scan of the image (the windows the
classifier currently mistakes most for objects, as Dalal and Triggs' bootstrapping), half
drawn at random, anywhere and near objects. The classifier sees each box with a margin of
context (``context`` of its sides, R-CNN's context padding): on the synthetic shapes,
whose classes differ by outline only, a margin of 0.15 raised the patch accuracy on unseen
objects from 65 % to 83 % after two epochs.

The scan is fully convolutional (OverFeat's insight): for each window shape the image is
resized so that the window becomes the ``P x P`` patch, and
:meth:`~visionkit.models.detect._patch_classifier.PatchClassifier.dense` then classifies
every window at a stride of ``window / (P / 4)`` pixels in one pass, sharing the
convolutions of overlapping windows; its valid convolutions make that exactly the result
of cropping each window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.errors import ConfigError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Detector
from visionkit.models.detect._patch_classifier import (
    STRIDE,
    PatchClassifier,
    build_detector,
    crop_patches,
    normalize,
    plain_target,
    scale_boxes,
    select_detections,
)
from visionkit.models.registry import register_model
from visionkit.models.weights import IMAGENET_MEAN, IMAGENET_STD
from visionkit.ops.boxes import box_convert, box_iou, clip_boxes, nms

__all__ = ["SlidingWindowDetector", "sliding_window"]

NEGATIVE_IOU = 0.3
"""A training window overlapping every ground-truth box by less than this is background."""

_POSITIVE_JITTER = 0.1  # centre shift and log-size change of positives, relative to the box
_NEAR_JITTER = 0.8  # the same for negatives drawn around objects
_MINING_POOL = 20  # hard negatives are chosen among this many times their count, by score
_MINING_NMS_IOU = 0.5


class SlidingWindowDetector(Detector):
    """A :class:`PatchClassifier` scanned over windows of several sizes and shapes.

    Args:
        config: How the model was built.
        classifier: The patch classifier (``K + 1`` classes, no box regression).
        scales: Window sides in pixels (square root of the window area), ascending.
        aspect_ratios: Window width / height ratios.
        batch_per_image: Patches classified per training image.
        positive_fraction: Share of those that are (jittered) ground-truth boxes, when the
            image has any.
        context: Margin around each box that the classifier sees, as a fraction of the
            box's sides: a scanned window is its box grown by ``1 + 2 context``.
        hard_negatives: Share of the negatives mined from a scan of the image (the
            windows most mistaken for objects); the others are drawn at random.
    """

    def __init__(
        self,
        config: ModelConfig,
        classifier: PatchClassifier,
        *,
        scales: tuple[float, ...],
        aspect_ratios: tuple[float, ...],
        batch_per_image: int,
        positive_fraction: float,
        context: float,
        hard_negatives: float,
    ) -> None:
        super().__init__(config)
        self.classifier, self.context = classifier, context
        self.hard_negatives = hard_negatives
        self.scales, self.aspect_ratios = scales, aspect_ratios
        self.batch_per_image, self.positive_fraction = batch_per_image, positive_fraction

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses ``{"loss_cls"}`` in train mode, else one detections dict per image."""
        self.check_inputs(images, targets, self.training)
        if not self.training:
            return [
                select_detections(*self.scan(image), self.thresholds, tuple(image.shape[-2:]))
                for image in images
            ]
        patches, labels = [], []
        for image, target in zip(images, targets, strict=True):
            windows, window_labels = self._training_windows(image, target)
            windows = windows.to(image.device)
            patch_size = self.classifier.patch_size
            patches.append(crop_patches(normalize(image, self), windows, patch_size, self.context))
            labels.append(window_labels.to(image.device))
        logits, _ = self.classifier(torch.cat(patches))
        return {"loss_cls": F.cross_entropy(logits, torch.cat(labels))}

    def window_shapes(self) -> list[tuple[float, float]]:
        """``(width, height)`` in pixels of every box shape scanned (windows without context)."""
        return [
            (side * math.sqrt(ratio), side / math.sqrt(ratio))
            for ratio in self.aspect_ratios
            for side in self.scales
        ]

    def scan(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classify every window of one ``[3, H, W]`` 0-1 image.

        Returns:
            The boxes ``[N, 4]`` (xyxy pixels, windows without their context) and their
            class probabilities ``[N, K]`` (background left out).
        """
        height, width = image.shape[-2:]
        size = self.classifier.patch_size
        normalised = normalize(image, self)[None]
        boxes, scores = [], []
        grow = 1 + 2 * self.context
        for box_w, box_h in self.window_shapes():
            window_w, window_h = box_w * grow, box_h * grow
            resized = (round(height * size / window_h), round(width * size / window_w))
            if min(resized) < size:  # the window is larger than the image
                continue
            scaled = F.interpolate(
                normalised, size=resized, mode="bilinear", antialias=True, align_corners=False
            )
            logits, _ = self.classifier.dense(scaled)
            rows, cols = logits.shape[-2:]
            scores.append(logits[0].softmax(0)[: self.num_classes].flatten(1).T)
            y, x = torch.meshgrid(
                torch.arange(rows, device=image.device) * STRIDE,
                torch.arange(cols, device=image.device) * STRIDE,
                indexing="ij",
            )
            corners = torch.stack([x, y, x + size, y + size], -1).reshape(-1, 4).float()
            scale = torch.tensor([width / resized[1], height / resized[0]] * 2)
            boxes.append(scale_boxes(corners * scale.to(corners), 1 / grow))
        if not boxes:
            boxes, scores = [torch.zeros(0, 4)], [torch.zeros(0, self.num_classes)]
        return torch.cat(boxes), torch.cat(scores)

    def _training_windows(
        self, image: torch.Tensor, target: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative windows of one training image, with their labels.

        Returns:
            ``float32`` ``[N, 4]`` xyxy windows on the CPU (``N <= batch_per_image``) and
            their ``int64`` labels (``K`` for background).
        """
        gt_boxes, gt_labels = plain_target(target)
        size = tuple(image.shape[-2:])
        num_pos = round(self.batch_per_image * self.positive_fraction) if len(gt_boxes) else 0
        picked = torch.arange(num_pos) % max(1, len(gt_boxes))
        positives = clip_boxes(_jitter(gt_boxes[picked], _POSITIVE_JITTER), *size)
        num_neg = self.batch_per_image - num_pos
        hard = self._hard_negatives(image, gt_boxes, round(num_neg * self.hard_negatives))
        negatives = torch.cat([hard, self._negatives(gt_boxes, num_neg - len(hard), size)])
        background = torch.full((len(negatives),), self.num_classes, dtype=torch.int64)
        return torch.cat([positives, negatives]), torch.cat([gt_labels[picked], background])

    def _hard_negatives(
        self, image: torch.Tensor, gt_boxes: torch.Tensor, count: int
    ) -> torch.Tensor:
        """The ``count`` scanned windows most mistaken for objects, among those overlapping
        every ground-truth box by IoU < :data:`NEGATIVE_IOU` (hard negative mining).

        The scan runs without gradients, its batch norms on their running statistics; NMS
        first spreads the choice over the image rather than one object's neighbourhood.
        """
        if count == 0:
            return torch.zeros(0, 4)
        was_training = self.classifier.training
        self.classifier.eval()
        try:
            with torch.no_grad():
                boxes, scores = self.scan(image)
        finally:
            self.classifier.train(was_training)
        boxes, objectness = boxes.cpu(), scores.amax(1).cpu()
        if len(gt_boxes):
            background = box_iou(boxes, gt_boxes).amax(1) < NEGATIVE_IOU
            boxes, objectness = boxes[background], objectness[background]
        best = objectness.topk(min(len(boxes), _MINING_POOL * count)).indices
        return boxes[best[nms(boxes[best], objectness[best], _MINING_NMS_IOU)[:count]]]

    def _negatives(self, gt_boxes: torch.Tensor, count: int, size: tuple[int, int]) -> torch.Tensor:
        """``count`` windows overlapping every box of ``gt_boxes`` by IoU < :data:`NEGATIVE_IOU`.

        Half are drawn anywhere in the image, with the scanned sizes and shapes; the other
        half around the objects (shifted and rescaled boxes), so the classifier learns to
        reject windows that show only part of an object.
        """
        height, width = size
        shapes = torch.tensor(self.window_shapes()).reshape(-1, 2)
        tries = 4 * count
        wh = shapes[torch.randint(len(shapes), (tries,))]
        wh = torch.minimum(wh, torch.tensor([width, height], dtype=wh.dtype))
        corner = torch.rand(tries, 2) * (torch.tensor([width, height]) - wh)
        candidates = torch.cat([corner, corner + wh], 1)
        if len(gt_boxes):
            near = _jitter(gt_boxes[torch.randint(len(gt_boxes), (tries,))], _NEAR_JITTER)
            candidates = torch.cat([candidates, clip_boxes(near, height, width)])
            sides = candidates[:, 2:] - candidates[:, :2]
            overlap = box_iou(candidates, gt_boxes).amax(1)
            candidates = candidates[(overlap < NEGATIVE_IOU) & (sides >= 2).all(1)]
        return candidates[torch.randperm(len(candidates))[:count]]


def _jitter(boxes: torch.Tensor, amount: float) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes with centres shifted and sides rescaled at random.

    The centre moves by up to ``amount`` of the box's width and height, and each side is
    multiplied by ``exp(u)``, ``u`` uniform in ``[-amount, amount]``.
    """
    cxcywh = box_convert(boxes, "xyxy", "cxcywh")
    shift = (torch.rand(len(boxes), 2, device=boxes.device) * 2 - 1) * amount
    log_scale = (torch.rand(len(boxes), 2, device=boxes.device) * 2 - 1) * amount
    centre = cxcywh[:, :2] + shift * cxcywh[:, 2:]
    return box_convert(torch.cat([centre, cxcywh[:, 2:] * log_scale.exp()], 1), "cxcywh", "xyxy")


def default_scales(image_size: int) -> list[float]:
    """Window sides from ``image_size / 8`` to ``image_size / sqrt 2``, a factor sqrt 2 apart."""
    return [round(image_size * 2 ** (k / 2) / 8, 2) for k in range(6)]


@register_model(
    "sliding-window",
    task="detect",
    description="Patch CNN scanned over an image pyramid, then NMS (the first detector)",
)
def sliding_window(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 256,
    patch_size: int = 32,
    width: int = 16,
    scales: list[float] | None = None,
    aspect_ratios: list[float] = (0.5, 1.0, 2.0),
    batch_per_image: int = 64,
    positive_fraction: float = 0.25,
    context: float = 0.2,
    hard_negatives: float = 0.5,
) -> SlidingWindowDetector:
    """A sliding-window detector for ``num_classes`` classes.

    Args:
        num_classes: ``K``, object classes (see :func:`build_detector`).
        weights: ``None`` or a visionkit weights file of this model.
        image_size: The input side it is meant for; sets the default ``scales``.
        patch_size: Side ``P`` of the patches classified (multiple of 4, >= 24).
        width: Channels of the patch CNN's first convolutions.
        scales: Window sides in pixels (square root of the area); ``None``: six from
            ``image_size / 8`` to ``image_size / sqrt 2``.
        aspect_ratios: Window width / height ratios scanned.
        batch_per_image: Patches classified per training image.
        positive_fraction: Share of the training patches that show an object.
        context: Margin around each box that the classifier sees, as a fraction of its
            sides.
        hard_negatives: Share of the training negatives mined from a scan of the image
            (0: all random, and no scan while training).

    Raises:
        ConfigError: An option is out of range.
        WeightsError: See :func:`build_detector`.

    Example:
        >>> model = sliding_window(num_classes=6, image_size=128).eval()  # doctest: +SKIP
        >>> detections = model([torch.rand(3, 128, 128)])  # doctest: +SKIP
    """
    scales = sorted(float(s) for s in (scales or default_scales(image_size)))
    aspect_ratios = [float(r) for r in aspect_ratios]
    if not scales or scales[0] <= 0 or not aspect_ratios or min(aspect_ratios) <= 0:
        raise ConfigError("scales and aspect_ratios must be positive", field="scales")
    if batch_per_image < 1 or not 0 <= positive_fraction <= 1:
        raise ConfigError(
            "batch_per_image must be >= 1 and positive_fraction in [0, 1]",
            field="batch_per_image",
        )
    options = {
        "image_size": image_size,
        "patch_size": patch_size,
        "width": width,
        "scales": scales,
        "aspect_ratios": aspect_ratios,
        "batch_per_image": batch_per_image,
        "positive_fraction": positive_fraction,
        "context": context,
        "hard_negatives": hard_negatives,
    }

    def make(classes: int) -> SlidingWindowDetector:
        config = ModelConfig(
            "sliding-window",
            "detect",
            classes,
            image_size,
            IMAGENET_MEAN,
            IMAGENET_STD,
            weights,
            options,
        )
        return SlidingWindowDetector(
            config,
            PatchClassifier(classes, patch_size, width),
            scales=tuple(scales),
            aspect_ratios=tuple(aspect_ratios),
            batch_per_image=batch_per_image,
            positive_fraction=positive_fraction,
            context=context,
            hard_negatives=hard_negatives,
        )

    return build_detector(make, name="sliding-window", weights=weights, num_classes=num_classes)
