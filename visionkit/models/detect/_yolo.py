"""``yolo-n``, ``yolo-s``, ``yolo-m``: visionkit's single-shot detector, trained from scratch.

One network pass per batch: a CSP backbone, a PAN-FPN neck and a decoupled anchor-free
head at strides 8, 16 and 32 (:mod:`~visionkit.models.detect._yolo_blocks`), trained with
task-aligned assignment (:mod:`~visionkit.models.detect._yolo_assign`) and a quality
classification, CIoU and distribution focal loss (:mod:`~visionkit.models.detect._yolo_loss`).
``yolo-n`` is sized for a CPU (about 10 ms per 320-pixel image on two cores); ``yolo-s``
and ``yolo-m`` are wider and deeper for a GPU. There are no pretrained weights: the family
trains from scratch, with mosaic augmentation by default (:attr:`Yolo.uses_mosaic`).

Inputs of any size are letterboxed inside the model: each image is resized so its longer
side is ``config.image_size``, then the batch is padded at the bottom and right to a
multiple of 32, so a box maps back to its image by one division per axis. The tensor path
:meth:`Yolo.forward_tensor` has no data-dependent Python control flow: ONNX export traces
it, and the eval-mode ``forward`` runs it before thresholding and NMS.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from visionkit.data.transforms import PAD_VALUE
from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Detector
from visionkit.models.detect._yolo_blocks import (
    YoloArch,
    YoloNet,
    anchor_points,
    distances_to_boxes,
    expected_distances,
)
from visionkit.models.detect._yolo_loss import LossGains, YoloLoss
from visionkit.models.registry import register_model
from visionkit.models.weights import apply_state_dict, read_state_dict, resolve_weights
from visionkit.ops.boxes import batched_nms, clip_boxes

__all__ = ["ARCHS", "Yolo", "yolo_m", "yolo_n", "yolo_s"]

DEFAULT_NUM_CLASSES = 80
"""Classes without ``num_classes`` and without weights: COCO's 80."""

PAD_MULTIPLE = 32
"""Batches are padded to multiples of the coarsest stride, so every level's map is whole."""

PRE_NMS_TOPK = 3000
"""Most ``(box, class)`` candidates per image that reach NMS, highest scores first."""

ARCHS = {
    "yolo-n": YoloArch((16, 32, 64, 96, 128), depths=(0, 1, 1, 1), head_width=32, head_depth=1),
    "yolo-s": YoloArch(widths=(32, 64, 128, 256, 512), depths=(1, 2, 2, 1), head_width=128),
    "yolo-m": YoloArch(widths=(48, 96, 192, 384, 576), depths=(2, 4, 4, 2), head_width=192),
}
"""Widths and depths of each size."""


def _class_weight(arch: YoloArch) -> str:
    """The state-dict entry whose rows count a saved model's classes."""
    return f"net.head.0.cls.{arch.head_depth}.weight"


class Yolo(Detector):
    """A single-shot detector (see the module docs) under the detector contract.

    Args:
        config: How the model was built; ``config.image_size`` is the letterbox side.
        arch: Widths and depths.
        loss: The training criterion; the default is :class:`YoloLoss`'s.

    Attributes:
        net: The network, ``[B, 3, H, W]`` normalised batch to per-point logits.
        criterion: The training loss.
    """

    uses_mosaic = True

    def __init__(self, config: ModelConfig, arch: YoloArch, loss: YoloLoss | None = None) -> None:
        super().__init__(config)
        self.net = YoloNet(arch, config.num_classes)
        self.criterion = loss or YoloLoss()
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def letterbox(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize each image's longer side to ``config.image_size`` and pad them into a batch.

        Args:
            images: ``float`` ``[3, H, W]`` images in 0-1, any sizes.

        Returns:
            ``(batch, scales)``: ``[B, 3, H', W']`` in 0-1, ``H'`` and ``W'`` the largest
            resized sides rounded up to multiples of 32, padded at the bottom and right
            with the data pipeline's grey; ``scales`` ``[B, 2]`` the ``(x, y)`` factors from
            input pixels to batch pixels (boxes map back by dividing by them).
        """
        side = self.config.image_size
        resized, scales = [], []
        for image in images:
            height, width = image.shape[-2:]
            ratio = side / max(height, width)
            size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
            if size != (height, width):
                image = F.interpolate(
                    image[None], size=size, mode="bilinear", antialias=True, align_corners=False
                )[0]
            resized.append(image)
            scales.append((size[1] / width, size[0] / height))
        height = _round_up(max(i.shape[-2] for i in resized))
        width = _round_up(max(i.shape[-1] for i in resized))
        batch = resized[0].new_full((len(images), 3, height, width), PAD_VALUE / 255)
        for slot, image in zip(batch, resized, strict=True):
            slot[:, : image.shape[-2], : image.shape[-1]] = image
        return batch, torch.tensor(scales, dtype=batch.dtype, device=batch.device)

    def forward_tensor(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded boxes and class probabilities of every anchor point, before thresholds
        and NMS: the traceable core that ONNX export and the eval-mode ``forward`` share.

        Args:
            batch: ``float`` ``[B, 3, H, W]`` in 0-1 (``H`` and ``W`` multiples of 32), not
                normalised: the model applies ``config.mean`` and ``config.std``.

        Returns:
            ``(boxes [B, N, 4], scores [B, N, K])``: ``xyxy`` boxes in batch pixels and
            sigmoid class probabilities, ``N = H W (1/8^2 + 1/16^2 + 1/32^2)`` anchor
            points, finest level first.
        """
        cls_logits, box_logits, sizes = self.net(self._normalise(batch))
        # decoded in float32 even under autocast: half precision is coarse at 640 pixels
        points, strides = anchor_points(sizes, batch.device, torch.float32)
        distances = expected_distances(box_logits.float()) * strides[:, None]
        return distances_to_boxes(points, distances), cls_logits.float().sigmoid()

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in train mode, detections in eval mode (see :class:`Detector`).

        Args:
            images: ``float32`` ``[3, H, W]`` images in 0-1, any sizes.
            targets: Train mode: per image ``"boxes"`` ``[M, 4]`` ``xyxy`` pixels of that
                image and ``"labels"`` ``int64`` ``[M]`` (``M`` may be 0).

        Returns:
            Train mode: ``{"loss_cls", "loss_box", "loss_dfl"}``. Eval mode: per image
            ``"boxes"`` ``[D, 4]`` in that image's pixels, ``"scores"`` ``[D]`` and
            ``"labels"`` ``[D]``, after :attr:`thresholds` (score at least ``conf``,
            class-wise NMS at ``iou``, at most ``max_det`` by decreasing score).
        """
        self.check_inputs(images, targets, self.training)
        batch, scales = self.letterbox(images)
        if self.training:
            return self._losses(batch, scales, targets)
        boxes, scores = self.forward_tensor(batch)
        factors = scales.repeat(1, 2)
        return [
            self._select(b / f, s, image.shape[-2:])
            for b, s, f, image in zip(boxes, scores, factors, images, strict=True)
        ]

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """The network input: ``config.mean`` and ``config.std`` applied, channels last
        (the convolutions run about 15 % faster that way on a CPU, and on tensor cores)."""
        return ((batch - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _losses(
        self, batch: torch.Tensor, scales: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        labels = torch.cat([t["labels"] for t in targets])
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ConfigError(
                f"class labels must be in 0..{self.num_classes - 1}, got {labels.min().item()}"
                f"..{labels.max().item()}",
                field="labels",
            )
        cls_logits, box_logits, sizes = self.net(self._normalise(batch))
        points, strides = anchor_points(sizes, batch.device, torch.float32)
        scaled = [
            {"boxes": t["boxes"].float() * s.repeat(2), "labels": t["labels"]}
            for t, s in zip(targets, scales, strict=True)
        ]
        # the assignment and the losses in float32 even under autocast, as in forward_tensor
        return self.criterion(cls_logits.float(), box_logits.float(), points, strides, scaled)

    def _select(
        self, boxes: torch.Tensor, scores: torch.Tensor, size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Threshold, class-wise NMS and cap one image's ``[N, 4]`` boxes (its own pixels)
        and ``[N, K]`` scores; every class above ``conf`` is a candidate of its own."""
        top_scores, index = scores.flatten().topk(min(PRE_NMS_TOPK, scores.numel()))
        keep = top_scores >= self.thresholds.conf
        top_scores, index = top_scores[keep], index[keep]
        labels = index % self.num_classes
        candidates = clip_boxes(boxes[index // self.num_classes], *size)
        kept = batched_nms(candidates, top_scores, labels, self.thresholds.iou)
        kept = kept[: self.thresholds.max_det]
        return {"boxes": candidates[kept], "scores": top_scores[kept], "labels": labels[kept]}

    def set_loss_gains(self, **gains: float) -> None:
        """Weigh :class:`YoloLoss`'s terms ``cls``, ``box`` and ``dfl``: the gains given,
        :class:`LossGains`' defaults for the others.

        Raises:
            ConfigError: Another name, or a gain that is not a number of at least 0.
        """
        known = {field.name for field in dataclasses.fields(LossGains)}
        for name, gain in gains.items():
            if name not in known:
                raise ConfigError(f"yolo's loss weighs {sorted(known)}, not {name!r}", field=name)
            if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain >= 0:
                raise ConfigError(f"must be a number of at least 0, got {gain!r}", field=name)
        self.criterion.gains = LossGains(**gains)

    def reset_classes(self, num_classes: int) -> None:
        """Replace the classification outputs with fresh ones for ``num_classes`` classes
        (fine-tuning on another dataset); every other weight is kept."""
        for level in self.net.head:
            level.reset_classes(num_classes)
        self.config = dataclasses.replace(self.config, num_classes=num_classes, names=None)


def _round_up(size: int) -> int:
    return math.ceil(size / PAD_MULTIPLE) * PAD_MULTIPLE


def _build(name: str, num_classes: int | None, weights: str | None, image_size: int) -> Yolo:
    """Build size ``name`` at random init, or from a visionkit weights file.

    A file's class count is read from its classification outputs; when ``num_classes``
    differs, those outputs are replaced after loading (fine-tuning on other classes).

    Raises:
        ConfigError: A bad ``image_size``.
        WeightsError: ``weights`` is not a readable visionkit ``yolo`` weights file of
            this size (the family has no pretrained downloads).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ConfigError(f"must be an int of at least 32, got {image_size!r}", field="image_size")
    source = resolve_weights(weights, model_name=name)
    if source is not None and source.kind != "file":
        raise WeightsError(
            f"{name} has no pretrained {source.kind} weights; pass weights=None (train from "
            "scratch) or a visionkit weights file",
            file=source.location,
            field="weights",
        )
    state = None if source is None else read_state_dict(source)
    classes = num_classes or DEFAULT_NUM_CLASSES
    if state is not None:
        key = _class_weight(ARCHS[name])
        if key not in state:
            raise WeightsError(
                f"no {key!r}: not the weights of a visionkit {name} model",
                file=source.location,
                field=key,
            )
        classes = int(state[key].shape[0])
    config = ModelConfig(
        name=name,
        task="detect",
        num_classes=classes,
        image_size=image_size,
        mean=(0.0, 0.0, 0.0),  # trained from scratch on 0-1 pixels: no dataset statistics
        std=(1.0, 1.0, 1.0),
        weights=weights,
        kwargs={"image_size": image_size},
    )
    model = Yolo(config, ARCHS[name])
    if state is not None:
        apply_state_dict(model, state, file=source.location)
        if num_classes is not None and num_classes != classes:
            model.reset_classes(num_classes)
    return model


@register_model("yolo-n", task="detect", description="visionkit YOLO, nano: fast on a CPU")
def yolo_n(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = 640
) -> Yolo:
    """The smallest size, for CPUs (see the module docs).

    Args:
        num_classes: Object classes ``K`` (default 80, or the weights file's).
        weights: ``None`` (random init) or a visionkit weights file or checkpoint.
        image_size: Letterbox side: each input's longer side is resized to it.
    """
    return _build("yolo-n", num_classes, weights, image_size)


@register_model("yolo-s", task="detect", description="visionkit YOLO, small: for a GPU")
def yolo_s(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = 640
) -> Yolo:
    """A wider, deeper size than ``yolo-n``; arguments as :func:`yolo_n`."""
    return _build("yolo-s", num_classes, weights, image_size)


@register_model("yolo-m", task="detect", description="visionkit YOLO, medium: for a GPU")
def yolo_m(
    *, num_classes: int | None = None, weights: str | None = None, image_size: int = 640
) -> Yolo:
    """The largest size; arguments as :func:`yolo_n`."""
    return _build("yolo-m", num_classes, weights, image_size)
