"""The registration, config, option checks and weights flow shared by segmenter families.

U-Net, FCN, DeepLabv3+ and Segmenter are built here from scratch, so their pretrained
weights can only be visionkit weights files of the same model. Each family keeps every
tensor that depends on the class count under a module named ``head``, so a file trained
on other classes still loads its body, and :func:`build_segmenter` (or
:func:`build_from_options`, for a model made from its config) handles random init, files
and class-count changes alike for all of them.

A family with several variants writes one builder, ``build(name, /, *, num_classes=None,
weights=None, image_size=..., **options)``, and a table of its variants;
:func:`register_variants` registers ``build`` once per :class:`Variant`, its name bound.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._config import ModelConfig
from visionkit.models.registry import register_model
from visionkit.models.segment._segmenter import SemanticSegmenter
from visionkit.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    apply_state_dict,
    read_state_dict,
    resolve_weights,
)

__all__ = [
    "DEFAULT_NUM_CLASSES",
    "Variant",
    "build_from_options",
    "build_segmenter",
    "check_choice",
    "check_int",
    "register_variants",
    "segment_config",
]

SegmenterT = TypeVar("SegmenterT", bound=SemanticSegmenter)

DEFAULT_NUM_CLASSES = 21
"""Classes without weights and without ``num_classes``: PASCAL VOC's 20 and background,
as torchvision's segmentation builders."""


def check_int(value: object, field: str, minimum: int) -> int:
    """``value`` if it is an int of at least ``minimum``, else a ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"must be an int >= {minimum}, got {value!r}", field=field)
    return value


def check_choice(value: object, field: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ConfigError naming ``field`` and them."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"must be one of {listed}, got {value!r}", field=field)
    return value


def segment_config(
    name: str,
    num_classes: int,
    weights: str | None,
    options: dict[str, Any],
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> ModelConfig:
    """The :class:`ModelConfig` of segmenter ``name``; ``options`` holds ``image_size``.

    ImageNet normalisation is the default: it is what
    :func:`~visionkit.data.transforms.segmentation_transforms` produces.
    """
    image_size = check_int(options.get("image_size"), "image_size", 16)
    return ModelConfig(name, "segment", num_classes, image_size, mean, std, weights, options)


def build_segmenter(
    make: Callable[[int], SemanticSegmenter],
    *,
    name: str,
    weights: str | None,
    num_classes: int | None,
    classes_key: str,
) -> SemanticSegmenter:
    """Build one of visionkit's own segmenters and load a visionkit weights file into it.

    Args:
        make: Builds the randomly initialised model for a class count.
        name: Registry name, for messages.
        weights: ``None`` or a visionkit weights file (a state dict or a checkpoint) of
            this model.
        num_classes: The wanted class count; ``None`` keeps the file's (or 21).
        classes_key: The state-dict key of a ``head`` tensor whose first dimension is the
            class count (``"head.weight"``).

    Returns:
        The model; with a file of another class count, its body is loaded and its
        ``head`` stays newly initialised.

    Raises:
        WeightsError: The weights are not a file, or do not fit this architecture.
    """
    source = resolve_weights(weights, model_name=name)
    if source is None:
        return make(num_classes or DEFAULT_NUM_CLASSES)
    if source.kind != "file":
        raise WeightsError(
            f"{name} has no {source.kind} weights; pass a visionkit weights file of this "
            "model or weights=None",
            file=source.location,
            field="weights",
        )
    state = read_state_dict(source)
    if classes_key not in state:
        raise WeightsError(
            f"not the weights of a visionkit {name}", file=source.location, field=classes_key
        )
    file_classes = int(state[classes_key].shape[0])
    model = make(num_classes or file_classes)
    apply_state_dict(
        model,
        state,
        file=source.location,
        drop_head=num_classes is not None and num_classes != file_classes,
    )
    return model


def build_from_options(
    model: Callable[[ModelConfig], SegmenterT],
    *,
    name: str,
    weights: str | None,
    num_classes: int | None,
    options: dict[str, Any],
    classes_key: str = "head.weight",
) -> SegmenterT:
    """:func:`build_segmenter` for a model made from its config alone.

    Args:
        model: Builds the randomly initialised model of a config (its class count among
            it), e.g. ``lambda config: UNet(config, depth=depth)``.
        name: Registry name.
        weights: As :func:`build_segmenter`.
        num_classes: As :func:`build_segmenter`.
        options: The builder's options, ``image_size`` among them, recorded in the config
            (see :func:`segment_config`).
        classes_key: As :func:`build_segmenter`.

    Returns:
        The model, its config :func:`segment_config`'s of ``name``, its class count,
        ``weights`` and ``options``.
    """
    return build_segmenter(
        lambda classes: model(segment_config(name, classes, weights, options)),
        name=name,
        weights=weights,
        num_classes=num_classes,
        classes_key=classes_key,
    )


@dataclass(frozen=True, kw_only=True)
class Variant:
    """A registry entry of a family with several variants (see :func:`register_variants`);
    a family's table subclasses it with what its builder needs.

    Attributes:
        description: One line shown by ``visionkit models``.
        summary: First line of the variant builder's docstring.
        default_weights: The weights spec that ``weights="DEFAULT"`` stands for.
        defaults: Option defaults of this variant that differ from the family builder's
            (``{"image_size": 512}``).
    """

    description: str
    summary: str
    default_weights: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


def register_variants(
    build: Callable[..., SemanticSegmenter], variants: Mapping[str, Variant]
) -> None:
    """Register every variant of a family as ``build`` with the variant's name bound.

    The builder registered as ``name`` calls ``build(name, **options)``; its signature is
    ``build``'s without ``name``, with the variant's ``defaults`` as the defaults of those
    options, all keyword-only, so the registry checks options against it. It is named
    after the variant (``fcn-8s``: ``fcn_8s``), and its docstring is the variant's
    ``summary`` and a pointer to ``build``'s, which documents the options.

    Args:
        build: The family's builder, ``(name, /, *, num_classes=None, weights=None,
            image_size=..., **options)``.
        variants: Registry name -> variant.
    """
    for name, variant in variants.items():
        register_model(
            name,
            task="segment",
            description=variant.description,
            default_weights=variant.default_weights,
        )(_variant_builder(build, name, variant))


def _variant_builder(
    build: Callable[..., SegmenterT], name: str, variant: Variant
) -> Callable[..., SegmenterT]:
    """``build`` with ``name`` and the variant's defaults bound, as a named function."""
    bound = functools.partial(build, name, **variant.defaults)

    def builder(**options: Any) -> SegmenterT:
        return bound(**options)

    builder.__signature__ = inspect.signature(bound)  # type: ignore[attr-defined]
    builder.__name__ = builder.__qualname__ = name.replace("-", "_")
    builder.__module__ = build.__module__
    builder.__doc__ = f"{variant.summary}\n\nArgs: as :func:`{build.__name__}`."
    return builder
