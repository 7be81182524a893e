"""The adapter that puts torchvision's detectors behind the :class:`Detector` contract.

Faster R-CNN, RetinaNet, FCOS, SSDlite and Mask R-CNN stay torchvision's own modules; the
adapter only translates at the edges:

- class indices ``0..K-1`` outside, ``1..K`` inside: torchvision's index 0 is the
  background of the two-stage models and SSD, and RetinaNet and FCOS count it too (their
  ``num_classes`` includes it, as their COCO heads do), so every family is built with
  ``K + 1`` classes and the adapter drops a prediction of index 0;
- the internal resize goes to ``image_size`` (longer side), so small images are not
  enlarged to torchvision's 800-1333 pixels;
- :class:`Thresholds` become the model's ``score_thresh``, ``nms_thresh`` and
  ``detections_per_img``.

Weights load through :mod:`visionkit.models.weights` (never torchvision's own loader, which
downloads and unpickles): ``None`` is random init with no backbone weights either, a
torchvision enum name (``"DEFAULT"``, ``"COCO_V1"``) loads COCO weights, replacing the
class-dependent predictor layers when ``num_classes`` is not COCO's 90 (torchvision's
fine-tuning recipe), and ``weights_backbone`` loads the ImageNet weights of the backbone's
classifier. A model that starts from pretrained weights gets torchvision's layout for it
(frozen BatchNorm, the first backbone stages frozen); the layout is recorded in the config,
so a checkpoint rebuilds the same modules without any weights.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.detect._detector import Detector, Thresholds
from visionkit.models.detect._targets import checked_target
from visionkit.models.detect._torchvision_weights import PRETRAINED, DetectionPretrainedCfg
from visionkit.models.weights import (
    WeightsSource,
    apply_state_dict,
    read_state_dict,
    resolve_torchvision_weights,
    resolve_weights,
)

__all__ = ["TorchvisionDetector", "build_torchvision_detector"]

_RANDOM_INIT_CLASSES = 90
"""Object classes without weights and without ``num_classes``: COCO's, as torchvision."""


@dataclass(frozen=True)
class _Head:
    """Where a family's class count shows in its state dict.

    Attributes:
        score_key: The class-score bias, ``anchors * (K + 1)`` long.
        anchors: Anchors per location of that bias's level.
        prefixes: Modules whose tensors depend on the class count (the predictor).
    """

    score_key: str
    anchors: int
    prefixes: tuple[str, ...]


_RCNN = _Head(
    "roi_heads.box_predictor.cls_score.bias",
    1,
    ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits."),
)
_DENSE = ("head.classification_head.cls_logits.",)
_HEADS = {  # by the first word of the model name
    "fasterrcnn": _RCNN,
    "maskrcnn": _RCNN,
    "retinanet": _Head("head.classification_head.cls_logits.bias", 9, _DENSE),
    "fcos": _Head("head.classification_head.cls_logits.bias", 1, _DENSE),
    "ssdlite320": _Head(
        "head.classification_head.module_list.0.1.bias", 6, ("head.classification_head.",)
    ),
}


class TorchvisionDetector(Detector):
    """A torchvision detection model (``net``) behind the :class:`Detector` contract.

    Args:
        net: The torchvision model, built with ``K + 1`` classes (index 0 unused outside).
        config: How it was built (``num_classes`` is ``K``).
    """

    def __init__(self, net: nn.Module, config: ModelConfig) -> None:
        super().__init__(config)
        self.net = net
        self._apply_thresholds(self.thresholds)

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in train mode, detections in eval mode (see :mod:`._detector`).

        Args:
            images: ``float32`` ``[3, H, W]`` tensors in 0-1; sizes may differ.
            targets: Train mode: per image ``"boxes"`` ``[N, 4]`` xyxy pixels, ``"labels"``
                ``int64`` ``[N]`` in ``0..K-1`` and, for Mask R-CNN, ``"masks"`` ``uint8``
                ``[N, H, W]``.

        Returns:
            Train mode: torchvision's losses (``loss_classifier``... or
            ``classification``...). Eval mode: per image ``"boxes"`` ``[M, 4]``,
            ``"scores"`` ``[M]``, ``"labels"`` ``[M]`` in ``0..K-1`` (and ``"masks"``
            ``[M, 1, H, W]`` in 0-1 for Mask R-CNN), in that image's pixels.

        Raises:
            ConfigError: Inputs outside the contract; a label outside ``0..K-1``, a box
                without positive width and height, or missing masks (Mask R-CNN).
        """
        self.check_inputs(images, targets, self.training)
        if self.training:
            return self.net(list(images), [self._target(t, i) for i, t in enumerate(targets)])
        return [_without_background(p) for p in self.net(list(images))]

    def _target(self, target: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
        """A contract target as torchvision wants it: labels shifted past the background."""
        boxes, labels = checked_target(target, index, self.num_classes)
        converted = {"boxes": boxes, "labels": labels + 1}
        if self.makes_masks:
            if "masks" not in target:
                raise ConfigError(
                    "Mask R-CNN trains on instance masks", record=f"target {index}", field="masks"
                )
            converted["masks"] = torch.as_tensor(target["masks"]).to(torch.uint8)
        return converted

    @property
    def makes_masks(self) -> bool:
        """True for Mask R-CNN: its RoI heads have a mask branch."""
        heads = getattr(self.net, "roi_heads", None)
        return heads is not None and heads.has_mask()

    def _apply_thresholds(self, thresholds: Thresholds) -> None:
        """Set the wrapped model's own post-processing (``roi_heads`` for the R-CNNs)."""
        post = getattr(self.net, "roi_heads", self.net)
        post.score_thresh = thresholds.conf
        post.nms_thresh = thresholds.iou
        post.detections_per_img = thresholds.max_det


def _without_background(prediction: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Torchvision's detections with labels ``1..K`` as ``0..K-1`` (index 0 dropped)."""
    keep = prediction["labels"] > 0
    kept = {key: value[keep] for key, value in prediction.items()}
    kept["labels"] = kept["labels"] - 1
    return kept


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` under ``module`` by torchvision's ``FrozenBatchNorm2d``."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)  # eps as torchvision's detectors
            for buffer in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _backbone_stages(body: nn.Module, backbone: str) -> list[list[nn.Module]]:
    """The backbone's stages from input to output, as torchvision counts trainable layers."""
    if backbone == "resnet50":
        return [[body.conv1, body.bn1], [body.layer1], [body.layer2], [body.layer3], [body.layer4]]
    # MobileNetV3: a stage starts at each block that reduces resolution (torchvision's
    # ``_is_cn`` marker), the last block being a stage of its own.
    blocks = list(body.children())
    starts = [0, *(i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False))]
    starts.append(len(blocks) - 1)
    return [blocks[a:b] for a, b in zip(starts, [*starts[1:], len(blocks)], strict=True)]


def _freeze_stages(body: nn.Module, backbone: str, trainable: int) -> None:
    """Stop gradients in all but the last ``trainable`` backbone stages."""
    stages = _backbone_stages(body, backbone)
    if isinstance(trainable, bool) or not isinstance(trainable, int):
        raise ConfigError(f"must be an int, got {trainable!r}", field="trainable_backbone_layers")
    if not 0 <= trainable <= len(stages):
        raise ConfigError(
            f"must be in 0..{len(stages)} for a {backbone} backbone, got {trainable}",
            field="trainable_backbone_layers",
        )
    for stage in stages[: len(stages) - trainable]:
        for module in stage:
            module.requires_grad_(False)


def _load(module: nn.Module, state: dict[str, torch.Tensor], file: str) -> None:
    """Load ``state`` strictly; BatchNorm counters that a frozen layout lacks are skipped."""
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    apply_state_dict(module, fitting, file=file)


def _refit_head(net: nn.Module, state: dict[str, torch.Tensor], head: _Head) -> dict:
    """``state`` with the predictor tensors of another class count swapped for ``net``'s own.

    The fine-tuning recipe: every pretrained tensor loads, the class-dependent layers of
    the predictor start from their fresh initialisation.
    """
    own = net.state_dict()
    refit = {
        key: value
        for key, value in own.items()
        if key.startswith(head.prefixes) and key in state and state[key].shape != value.shape
    }
    return {**state, **refit}


def _load_backbone(net: nn.Module, source: WeightsSource, backbone: str) -> None:
    """Load a classifier's ImageNet weights into the detector's backbone body."""
    body = net.backbone.body
    prefix = "" if backbone == "resnet50" else "features."  # MobileNetV3's blocks
    own = body.state_dict()
    state = {
        key.removeprefix(prefix): value
        for key, value in read_state_dict(source).items()
        if key.startswith(prefix) and key.removeprefix(prefix) in own
    }
    _load(body, state, source.location)


def _classes_in_file(state: dict[str, torch.Tensor], head: _Head, file: str) -> int:
    """``K`` of a saved :class:`TorchvisionDetector` state dict."""
    key = f"net.{head.score_key}"
    score = state.get(key)
    if score is None or score.dim() != 1 or len(score) % head.anchors:
        raise WeightsError(
            "not the weights of this visionkit detector (no class scores)", file=file, field=key
        )
    return len(score) // head.anchors - 1


# Settings the adapter owns: the resize (image_size) and the post-processing (Thresholds).
_OWNED = {
    "min_size": "image_size",
    "max_size": "image_size",
    "box_score_thresh": "set_thresholds(conf=...)",
    "score_thresh": "set_thresholds(conf=...)",
    "box_nms_thresh": "set_thresholds(iou=...)",
    "nms_thresh": "set_thresholds(iou=...)",
    "box_detections_per_img": "set_thresholds(max_det=...)",
    "detections_per_img": "set_thresholds(max_det=...)",
}


def _check_options(name: str, net: nn.Module, options: dict[str, Any]) -> None:
    """Refuse options that torchvision's model would ignore (its ``**kwargs`` swallow them)."""
    params = inspect.signature(type(net).__init__).parameters
    accepted = sorted(set(params) - {"self", "backbone", "num_classes", "kwargs", *_OWNED})
    for key in options:
        if key in _OWNED:
            raise ConfigError(f"set through {_OWNED[key]}, not as an option", field=key)
        if key not in accepted:
            raise ConfigError(
                f"{name} takes no option {key!r}; it accepts {', '.join(accepted)}", field=key
            )


def _class_count(
    source: WeightsSource | None, state: dict[str, torch.Tensor] | None, head: _Head
) -> int:
    """``K`` when ``num_classes`` is not given: the weights' (COCO's 90 for random init)."""
    if source is None:
        return _RANDOM_INIT_CLASSES
    if source.kind == "torchvision":
        return source.num_classes - 1  # torchvision counts the background
    return _classes_in_file(state, head, source.location)


def _torchvision_net(name: str, classes: int, options: dict[str, Any]) -> nn.Module:
    """Torchvision's model ``name`` with ``classes + 1`` classes, random init, no downloads."""
    from torchvision.models import get_model

    net = get_model(name, weights=None, weights_backbone=None, num_classes=classes + 1, **options)
    _check_options(name, net, options)
    return net


@dataclass(frozen=True)
class _Layout:
    """How the backbone is built: frozen BatchNorm, trainable stages (``None``: all)."""

    frozen_batchnorm: bool
    trainable_layers: int | None


def _layout(
    name: str,
    cfg: DetectionPretrainedCfg,
    pretrained: bool,
    trainable_backbone_layers: int | None,
    frozen_batchnorm: bool | None,
) -> _Layout:
    """The backbone layout: torchvision's for pretrained starts unless the options say."""
    if cfg.backbone is None and (trainable_backbone_layers is not None or frozen_batchnorm):
        raise ConfigError(
            f"{name} trains its whole backbone with live BatchNorm; it takes no "
            "trainable_backbone_layers and no frozen_batchnorm=True",
            field="trainable_backbone_layers",
        )
    frozen = cfg.frozen_batchnorm and pretrained if frozen_batchnorm is None else frozen_batchnorm
    trainable = trainable_backbone_layers
    if trainable is None and pretrained and cfg.backbone is not None:
        trainable = cfg.trainable_layers
    return _Layout(bool(frozen), trainable)


def _sources(
    name: str, cfg: DetectionPretrainedCfg, weights: str | None, weights_backbone: str | None
) -> tuple[WeightsSource | None, WeightsSource | None]:
    """The resolved ``weights`` and ``weights_backbone``; refuse what this family cannot load."""
    source = resolve_torchvision_weights(weights, model_name=name)
    if weights_backbone is None:
        return source, None
    if cfg.backbone is None:
        raise ConfigError(
            f"{name} has MobileNetV3's reduced tail, which ImageNet weights do not fit; "
            "use weights='DEFAULT' (COCO) or train from scratch",
            field="weights_backbone",
        )
    if source is not None:
        raise ConfigError(
            "weights_backbone applies only without weights (the weights hold the backbone)",
            field="weights_backbone",
        )
    return None, resolve_weights(weights_backbone, model_name=cfg.backbone)


def build_torchvision_detector(
    name: str,
    *,
    num_classes: int | None,
    weights: str | None,
    image_size: int,
    trainable_backbone_layers: int | None,
    weights_backbone: str | None,
    frozen_batchnorm: bool | None,
    options: dict[str, Any],
) -> TorchvisionDetector:
    """Build torchvision detector ``name`` as a :class:`TorchvisionDetector`, loading weights.

    The shared body of the registry builders in :mod:`._torchvision` (which document the
    arguments); ``options`` go to torchvision's model.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ConfigError(f"must be an int >= 32, got {image_size!r}", field="image_size")
    cfg, head = PRETRAINED[name], _HEADS[name.split("_")[0]]
    source, backbone_source = _sources(name, cfg, weights, weights_backbone)
    coco = source is not None and source.kind == "torchvision"
    layout = _layout(
        name, cfg, coco or backbone_source is not None, trainable_backbone_layers, frozen_batchnorm
    )
    state = read_state_dict(source) if source is not None else None
    classes = num_classes or _class_count(source, state, head)
    net = _torchvision_net(name, classes, options)
    if layout.frozen_batchnorm:
        _freeze_batchnorm(net.backbone.body)
    if coco:
        _load(net, _refit_head(net, state, head), source.location)
    if backbone_source is not None:
        _load_backbone(net, backbone_source, cfg.backbone)
    if layout.trainable_layers is not None:
        _freeze_stages(net.backbone.body, cfg.backbone, layout.trainable_layers)
    net.transform.min_size, net.transform.max_size = (image_size,), image_size
    if net.transform.fixed_size is not None:  # SSD resizes to a fixed square
        net.transform.fixed_size = (image_size, image_size)

    categories = source.meta["categories"] if coco else []
    kwargs = {
        "image_size": image_size,
        "trainable_backbone_layers": layout.trainable_layers,
        "frozen_batchnorm": layout.frozen_batchnorm,
        **options,
    }
    config = ModelConfig(
        name,
        "detect",
        classes,
        image_size,
        tuple(net.transform.image_mean),
        tuple(net.transform.image_std),
        weights,
        kwargs,
        categories[1:] if len(categories) == classes + 1 else None,
    )
    model = TorchvisionDetector(net, config)
    if source is not None and source.kind == "file":
        _load(model, state, source.location)
    return model
