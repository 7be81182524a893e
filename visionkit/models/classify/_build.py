"""The registration and the weights flow that every classification builder shares.

:func:`register_classifier` registers a builder for task ``classify`` with the default
weights of its :data:`PRETRAINED` entry, so a family module names each model once.

A builder supplies ``make(num_classes)`` (a randomly initialised classifier) and, when its
family has pretrained weights of its own kind (torchvision enums, hf checkpoints), a
``pretrained(source)`` loader. :func:`build_classifier` then handles the rest alike for
every family: random init, visionkit weight files (built with the file's class count and
loaded strictly), and the final head reset when ``num_classes`` differs from the weights',
as torchvision's fine-tuning recipes do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from visionkit.errors import WeightsError
from visionkit.models.classify._classifier import ImageClassifier, ModelConfig
from visionkit.models.classify._pretrained import PRETRAINED
from visionkit.models.registry import BuilderT, register_model
from visionkit.models.weights import (
    WeightsSource,
    apply_state_dict,
    read_state_dict,
    resolve_weights,
)

DEFAULT_NUM_CLASSES = 1000
"""Head size without weights and without ``num_classes``: ImageNet-1k, as torchvision."""

MakeFn = Callable[[int], ImageClassifier]
PretrainedFn = Callable[[WeightsSource], ImageClassifier]


def register_classifier(name: str, description: str) -> Callable[[BuilderT], BuilderT]:
    """Register a classification builder under ``name`` (see
    :func:`~visionkit.models.register_model`), its default weights those of :data:`PRETRAINED`.

    Args:
        name: Registry name; also the key of its entry in :data:`PRETRAINED`.
        description: One line shown by ``visionkit models``.

    Returns:
        A decorator that registers the builder and returns it unchanged.
    """
    return register_model(
        name, task="classify", description=description, default_weights=PRETRAINED[name].weights
    )


def make_config(
    name: str, num_classes: int, image_size: int, weights: str | None, options: dict[str, Any]
) -> ModelConfig:
    """The :class:`ModelConfig` of classifier ``name``, with its weights' normalisation."""
    pretrained = PRETRAINED[name]
    return ModelConfig(
        name, "classify", num_classes, image_size, pretrained.mean, pretrained.std, weights, options
    )


def head_classes(state: dict[str, torch.Tensor], *, file: str | Path) -> int:
    """The class count of a saved :class:`ImageClassifier` state dict (rows of ``head.weight``)."""
    weight = state.get("head.weight")
    if weight is None or weight.dim() != 2:
        raise WeightsError(
            "no 2-D 'head.weight': not the weights of a visionkit classifier",
            file=file,
            field="head.weight",
        )
    return int(weight.shape[0])


def build_classifier(
    make: MakeFn,
    *,
    model_name: str,
    weights: str | None,
    num_classes: int | None,
    pretrained: dict[str, PretrainedFn] | None = None,
) -> ImageClassifier:
    """Build a classifier and load ``weights`` into it.

    Args:
        make: Builds a randomly initialised classifier with the given class count.
        model_name: The torchvision builder name for enum specs; the model name otherwise.
        weights: A weights spec (see :mod:`visionkit.models.weights`), or ``None``.
        num_classes: The wanted class count; ``None`` keeps the weights' (or 1000).
        pretrained: Loaders by source kind (``"torchvision"``, ``"hf"``) for this family.

    Returns:
        The classifier, its head reset to ``num_classes`` if that differs from the weights'.

    Raises:
        WeightsError: The weights cannot be resolved, read or fitted, or are of a kind
            this family cannot load.
    """
    source = resolve_weights(weights, model_name=model_name)
    if source is None:
        return make(num_classes or DEFAULT_NUM_CLASSES)
    if source.kind == "file":
        state = read_state_dict(source)
        model = make(head_classes(state, file=source.location))
        apply_state_dict(model, state, file=source.location)
    elif pretrained and source.kind in pretrained:
        model = pretrained[source.kind](source)
    else:
        raise WeightsError(
            f"{model_name} cannot load {source.kind} weights; pass a visionkit weights file "
            "or weights=None",
            file=source.location,
            field="weights",
        )
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model
