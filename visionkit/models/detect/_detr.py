"""DETR (Carion et al. 2020) and RT-DETR (Zhao et al. 2024) through transformers.

``detr-resnet-50`` and ``rtdetr-r18`` are transformers' ``DetrForObjectDetection`` and
``RTDetrForObjectDetection`` behind the :class:`Detector` contract (see
:mod:`._detr_adapter` for the resize, the losses and the decoding).

``weights=None`` builds the architecture offline from a config (transformers' own ResNet
backbones, randomly initialised, never timm or a download); ``config_overrides`` changes
any config field, so tests build tiny models. ``weights="hf:<repo-id-or-folder>"`` loads
through ``from_pretrained`` (offline and not cached: a
:class:`~visionkit.errors.WeightsError` naming the folder to fill), with a new class
head when ``num_classes`` differs from the checkpoint's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models._hf_config import (
    architecture_overrides,
    build_config,
    changed_fields,
    check_overrides,
    label_names,
    transformers_class,
)
from visionkit.models._hub import hf_from_pretrained
from visionkit.models.detect._detr_adapter import DetectionTransformer, DetrDetector, RTDetrDetector
from visionkit.models.registry import register_model
from visionkit.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsSource,
    apply_state_dict,
    read_state_dict,
    resolve_weights,
)

__all__ = ["detr_resnet_50", "rtdetr_r18"]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """One transformers detector: its classes, default weights, input and base config.

    Attributes:
        detector: The adapter class.
        model_class: Name of the transformers ``...ForObjectDetection`` class.
        config_class: Name of its transformers config class.
        weights: The ``hf:`` spec that ``weights="DEFAULT"`` stands for.
        classes: ``K`` of that checkpoint (used for random init without ``num_classes``).
        image_size: Default input side.
        mean: Input normalisation mean (0-1 pixels).
        std: Input normalisation standard deviation.
        base: Config fields of the architecture (``backbone_config`` a dict).
        hub: Fields forced on checkpoints loaded with ``from_pretrained``.
    """

    detector: type[DetectionTransformer]
    model_class: str
    config_class: str
    weights: str
    classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    base: dict[str, Any]
    hub: dict[str, Any] = dataclasses.field(default_factory=dict)


_SPECS = {
    "detr-resnet-50": _Spec(
        DetrDetector,
        "DetrForObjectDetection",
        "DetrConfig",
        "hf:facebook/detr-resnet-50",
        91,  # COCO category ids 1..90 used directly, 0 and the gaps unused
        640,
        IMAGENET_MEAN,
        IMAGENET_STD,
        {
            "backbone_config": {"model_type": "resnet", "out_features": ["stage4"]},
            "auxiliary_loss": True,  # DETR trains with a loss after every decoder layer
        },
        {"auxiliary_loss": True},
    ),
    "rtdetr-r18": _Spec(
        RTDetrDetector,
        "RTDetrForObjectDetection",
        "RTDetrConfig",
        "hf:PekingU/rtdetr_r18vd",
        80,
        640,
        (0.0, 0.0, 0.0),  # RT-DETR's image processor feeds 0-1 pixels
        (1.0, 1.0, 1.0),
        {
            "backbone_config": {
                "model_type": "rt_detr_resnet",
                "depths": [2, 2, 2, 2],
                "hidden_sizes": [64, 128, 256, 512],
                "layer_type": "basic",
                "out_features": ["stage2", "stage3", "stage4"],
            },
            "encoder_in_channels": [128, 256, 512],
            "hidden_expansion": 0.5,
            "decoder_layers": 3,
        },
        {"anchor_image_size": None},  # anchors follow the input size
    ),
}


def _make_config(spec: _Spec, classes: int, overrides: dict[str, Any]) -> Any:
    """The transformers config of the base architecture with ``overrides`` and ``K`` labels."""
    fields = copy.deepcopy(spec.base)
    overrides = copy.deepcopy(overrides)
    backbone, changes = fields.pop("backbone_config"), overrides.pop("backbone_config", {})
    if changes.get("model_type", backbone["model_type"]) == backbone["model_type"]:
        changes = {**backbone, **changes}  # entries update the base backbone's
    return build_config(
        spec.config_class, {**fields, **overrides, "backbone_config": changes}, classes
    )


def _architecture(spec: _Spec, config: Any) -> dict[str, Any]:
    """The fields of ``config`` that differ from the base architecture (JSON-able).

    Recorded as ``config_overrides``, they rebuild a loaded checkpoint's architecture
    without its weights (a checkpoint's model, or another backbone type, whole).
    """
    base = _make_config(spec, config.num_labels, {})
    changed = architecture_overrides(config, base)
    backbone = config.backbone_config.to_dict()
    if backbone["model_type"] != base.backbone_config.model_type:
        changed["backbone_config"] = {
            **changed_fields(backbone, {}),
            "model_type": backbone["model_type"],
        }
    return changed


def _from_hub(
    spec: _Spec, source: WeightsSource, num_classes: int | None, overrides: dict[str, Any]
) -> nn.Module:
    """A checkpoint through ``from_pretrained``, with a new class head for another ``K``."""
    labels = {} if num_classes is None else {"num_labels": num_classes}
    factory = transformers_class(spec.model_class).from_pretrained
    try:
        model = hf_from_pretrained(
            source.location,
            factory,
            ignore_mismatched_sizes=True,
            **labels,
            **{**spec.hub, **overrides},
        )
    except ImportError as error:  # a checkpoint whose backbone needs timm
        raise WeightsError(f"cannot build it: {error}", file=source.location) from None
    return model.float().train()  # from_pretrained returns eval mode


def _check_queries(spec: _Spec, model: nn.Module, image_size: int) -> None:
    """Refuse an RT-DETR input too small to hold its queries (it picks them from the tokens)."""
    config = model.config
    if spec.detector is not RTDetrDetector:
        return
    tokens = sum(math.ceil(image_size / s) ** 2 for s in config.feat_strides)
    if tokens < config.num_queries:
        raise ConfigError(
            f"{image_size} px gives {tokens} encoder tokens, fewer than the "
            f"{config.num_queries} queries; use a larger image_size or fewer num_queries",
            field="image_size",
        )


def _classes_in_file(spec: _Spec, state: dict[str, torch.Tensor], file: str) -> int:
    """``K`` of a saved detector's state dict (the class head's bias)."""
    key = (
        "model.class_labels_classifier.bias"
        if spec.detector is DetrDetector
        else "model.model.enc_score_head.bias"
    )
    if key not in state:
        raise WeightsError("not the weights of this visionkit detector", file=file, field=key)
    return len(state[key]) - (1 if spec.detector is DetrDetector else 0)


def _build(
    name: str,
    num_classes: int | None,
    weights: str | None,
    image_size: int,
    config_overrides: dict[str, Any] | None,
) -> DetectionTransformer:
    """Build transformers detector ``name``, from its config or from ``weights``."""
    spec = _SPECS[name]
    overrides = dict(config_overrides or {})
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ConfigError(f"must be an int >= 32, got {image_size!r}", field="image_size")
    check_overrides(spec.config_class, overrides)
    source = resolve_weights(weights, model_name=name)
    state = None
    if source is not None and source.kind == "hf":
        model = _from_hub(spec, source, num_classes, overrides)
        kept = num_classes is None or num_classes == model.config.num_labels
        overrides = _architecture(spec, model.config)
    else:
        if source is not None:
            state = read_state_dict(source)
        classes = num_classes or (
            _classes_in_file(spec, state, source.location) if state else spec.classes
        )
        model = transformers_class(spec.model_class)(_make_config(spec, classes, overrides))
        kept = False
    _check_queries(spec, model, image_size)
    config = ModelConfig(
        name,
        "detect",
        model.config.num_labels,
        image_size,
        spec.mean,
        spec.std,
        weights,
        {"image_size": image_size, "config_overrides": overrides},
        label_names(model.config) if kept else None,
    )
    detector = spec.detector(model, config)
    if state is not None:
        apply_state_dict(detector, state, file=source.location)
    return detector


@register_model(
    "detr-resnet-50",
    task="detect",
    description="DETR, ResNet-50 (transformers), 41.5 M parameters, COCO box mAP 42.0",
    default_weights=_SPECS["detr-resnet-50"].weights,
)
def detr_resnet_50(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = _SPECS["detr-resnet-50"].image_size,
    config_overrides: dict[str, Any] | None = None,
) -> DetrDetector:
    """DETR with a ResNet-50 backbone: 6 encoder and 6 decoder layers, 100 queries.

    The COCO checkpoint ``facebook/detr-resnet-50`` uses a timm backbone, so loading it
    needs timm installed; ``weights=None`` builds transformers' own ResNet-50 offline.

    Args:
        num_classes: ``K`` object classes; ``None`` keeps the checkpoint's (91 for random
            init, COCO's category ids).
        weights: ``None``, ``"hf:<repo-id-or-folder>"`` (a folder from
            ``save_pretrained`` works too) or a visionkit weights file of this model.
        image_size: The longer side that images are resized to inside the model.
        config_overrides: ``DetrConfig`` fields to change (``d_model``, ``encoder_layers``,
            ``num_queries``...; ``backbone_config`` entries update the ResNet's).

    Returns:
        The detector, in train mode.

    Raises:
        ConfigError: A config field that ``DetrConfig`` refuses, or a bad ``image_size``.
        WeightsError: The weights cannot be found (offline: names the folder to fill),
            built or fitted.
    """
    return _build("detr-resnet-50", num_classes, weights, image_size, config_overrides)


@register_model(
    "rtdetr-r18",
    task="detect",
    description="RT-DETR, ResNet-18-vd (transformers), 20.1 M parameters, COCO box mAP 46.5",
    default_weights=_SPECS["rtdetr-r18"].weights,
)
def rtdetr_r18(
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = _SPECS["rtdetr-r18"].image_size,
    config_overrides: dict[str, Any] | None = None,
) -> RTDetrDetector:
    """RT-DETR with a ResNet-18-vd backbone: hybrid encoder, 3 decoder layers, 300 queries.

    Args: as :func:`detr_resnet_50` (``RTDetrConfig`` fields; 80 classes for random
    init). ``image_size`` must give at least as many encoder tokens as queries (128 px
    for 300).
    """
    return _build("rtdetr-r18", num_classes, weights, image_size, config_overrides)
