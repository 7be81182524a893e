"""SegFormer (Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation
with Transformers", NeurIPS 2021) through transformers' ``SegformerForSemanticSegmentation``.

A hierarchical Mix Transformer encoder (MiT-b0 or -b2) and the all-MLP decoder; the
logits come at a quarter of the input size (:meth:`SegFormer.forward_logits`) and the base
class upsamples them bilinearly, as transformers' post-processing does.

``weights=None`` builds the architecture offline from a config; ``config_overrides``
changes any ``SegformerConfig`` field, so tests build tiny models. ``weights="hf:<repo>"``
(``"DEFAULT"``: the ADE20k checkpoint) or ``"hf:<folder>"`` loads through
``from_pretrained`` (offline and not cached: a :class:`~visionkit.errors.WeightsError`
naming the folder to fill), with a new classifier when ``num_classes`` differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visionkit.errors import WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models._hf_config import (
    architecture_overrides,
    build_config,
    check_overrides,
    label_names,
    transformers_class,
)
from visionkit.models._hub import hf_from_pretrained
from visionkit.models.segment._build import Variant, register_variants, segment_config
from visionkit.models.segment._segmenter import SemanticSegmenter
from visionkit.models.weights import (
    WeightsSource,
    apply_state_dict,
    read_state_dict,
    resolve_weights,
)

__all__ = ["SegFormer", "build_segformer"]

_CLASSES_KEY = "net.decode_head.classifier.weight"


@dataclass(frozen=True)
class _Spec(Variant):
    """One SegFormer size: its registry entry and the config fields of its encoder.

    Attributes:
        classes: ``C`` of the default checkpoint (ADE20k's 150), used for random init too.
        base: ``SegformerConfig`` fields of the size (transformers' defaults are MiT-b0).
    """

    classes: int
    base: dict[str, Any]


_SPECS = {
    "segformer-b0": _Spec(
        150,
        {},
        description="SegFormer-B0 (transformers), 3.8 M parameters, ADE20k mIoU 37.4",
        summary="SegFormer with the MiT-b0 encoder (widths 32-256, 8 blocks) and a 256-wide "
        "decoder.",
        default_weights="hf:nvidia/segformer-b0-finetuned-ade-512-512",
    ),
    "segformer-b2": _Spec(
        150,
        {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
        description="SegFormer-B2 (transformers), 27.5 M parameters, ADE20k mIoU 46.5",
        summary="SegFormer with the MiT-b2 encoder (widths 64-512, 16 blocks) and a 768-wide "
        "decoder.",
        default_weights="hf:nvidia/segformer-b2-finetuned-ade-512-512",
    ),
}


class SegFormer(SemanticSegmenter):
    """A transformers ``SegformerForSemanticSegmentation`` behind the segmenter contract.

    Args:
        net: The transformers model.
        config: The model's config.
    """

    def __init__(self, net: nn.Module, config: ModelConfig) -> None:
        super().__init__(config)
        self.net = net

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, ~H/4, ~W/4]`` of normalised images ``[B, 3, H, W]``."""
        return self.net(pixel_values=x).logits


def _make_config(spec: _Spec, classes: int, overrides: dict[str, Any]) -> Any:
    """The ``SegformerConfig`` of the size with ``overrides`` and ``classes`` labels."""
    check_overrides("SegformerConfig", overrides)
    return build_config("SegformerConfig", {**spec.base, **overrides}, classes)


def _from_hub(source: WeightsSource, num_classes: int | None, overrides: dict) -> nn.Module:
    """A checkpoint through ``from_pretrained``, with a new classifier for another ``C``."""
    labels = {} if num_classes is None else {"num_labels": num_classes}
    factory = transformers_class("SegformerForSemanticSegmentation").from_pretrained
    model = hf_from_pretrained(
        source.location, factory, ignore_mismatched_sizes=True, **labels, **overrides
    )
    return model.float().train()  # from_pretrained returns eval mode


def _reset_classifier(net: nn.Module, classes: int) -> None:
    """A fresh final 1x1 classifier of ``classes`` outputs (the config says so too)."""
    old = net.decode_head.classifier
    net.decode_head.classifier = nn.Conv2d(old.in_channels, classes, 1)
    net.config.num_labels = classes


def build_segformer(
    name: str,
    /,
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    image_size: int = 512,
    config_overrides: dict[str, Any] | None = None,
) -> SegFormer:
    """Build SegFormer size ``name``, from its config or from ``weights``.

    Registered once per size, with ``name`` bound.

    Args:
        name: Registry name of the size: ``"segformer-b0"`` or ``"segformer-b2"``.
        num_classes: ``C`` classes; ``None`` keeps the checkpoint's (150 for random
            init, ADE20k's).
        weights: ``None``, ``"hf:<repo-id-or-folder>"`` (a folder from
            ``save_pretrained`` works too) or a visionkit weights file of this model.
        image_size: Square input side the model is meant for (512 for the checkpoints; any
            size works).
        config_overrides: ``SegformerConfig`` fields to change (``hidden_sizes``,
            ``depths``, ``num_attention_heads``, ``decoder_hidden_size``...).

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: A config field that ``SegformerConfig`` lacks or refuses.
        WeightsError: The weights cannot be found (offline: names the folder to fill),
            read or fitted.

    Example:
        >>> model = create_model("segformer-b0", num_classes=7)  # doctest: +SKIP
    """
    spec = _SPECS[name]
    overrides = dict(config_overrides or {})
    source = resolve_weights(weights, model_name=name)
    state = None
    if source is not None and source.kind == "hf":
        net = _from_hub(source, num_classes, overrides)
        base = _make_config(spec, net.config.num_labels, {})
        overrides = architecture_overrides(net.config, base)
        kept = num_classes is None or num_classes == net.config.num_labels
    else:
        if source is not None:
            state = read_state_dict(source)
            if _CLASSES_KEY not in state:
                raise WeightsError(
                    f"not the weights of a visionkit {name}",
                    file=source.location,
                    field=_CLASSES_KEY,
                )
        classes = len(state[_CLASSES_KEY]) if state else num_classes or spec.classes
        net = transformers_class("SegformerForSemanticSegmentation")(
            _make_config(spec, classes, overrides)
        )
        kept = False
    options = {"image_size": image_size, "config_overrides": overrides}
    config = segment_config(name, net.config.num_labels, weights, options)
    names = label_names(net.config) if kept else None
    model = SegFormer(net, dataclasses.replace(config, names=names))
    if state is not None:
        apply_state_dict(model, state, file=source.location)
        if num_classes is not None and num_classes != net.config.num_labels:
            _reset_classifier(net, num_classes)
            model.config = dataclasses.replace(config, num_classes=num_classes)
    return model


register_variants(build_segformer, _SPECS)
