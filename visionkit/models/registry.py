"""The model registry: one name per builder, so the API, the CLI and the trainer share a catalogue.

A family module decorates each keyword-only builder with :func:`register_model`; importing
:mod:`visionkit.models` imports every family, so ``create_model("resnet18")`` works after
that one import. A taken name is refused (two builders behind one name would make a run
folder ambiguous), and an unknown name is answered with the closest registered names.

Builders take ``(*, num_classes, weights, **options)`` and return an ``nn.Module``; this
module never imports torch itself, so listing the catalogue costs nothing.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from visionkit.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelEntry", "create_model", "list_models", "model_info", "register_model"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model, without building it.

    Attributes:
        name: Registry name (``"resnet18"``, ``"deit-tiny"``).
        task: The task it serves (``"classify"``, ``"detect"``...).
        description: One line for ``visionkit models``.
        default_weights: The weights spec that ``weights="DEFAULT"`` means for this model
            (a torchvision enum name or ``"hf:<repo-id>"``), ``None`` when it has none.
    """

    name: str
    task: str
    description: str
    default_weights: str | None


_REGISTRY: dict[str, tuple[ModelEntry, Callable[..., nn.Module]]] = {}


def _check_builder(name: str, builder: Callable[..., Any]) -> None:
    """Refuse a builder that does not take keyword-only ``num_classes`` and ``weights``."""
    params = inspect.signature(builder).parameters
    for required in ("num_classes", "weights"):
        param = params.get(required)
        if param is None or param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ConfigError(
                f"builder {builder.__qualname__} for {name!r} must take keyword-only "
                f"'{required}' (signature (*, num_classes, weights, **options))"
            )


def register_model(
    name: str, *, task: str, description: str = "", default_weights: str | None = None
) -> Callable[[BuilderT], BuilderT]:
    """Register a keyword-only model builder under ``name``; refuse a name already taken.

    Args:
        name: Registry name, unique across every task.
        task: The task the model serves (``"classify"``...).
        description: One line shown by ``visionkit models``.
        default_weights: The weights spec that ``weights="DEFAULT"`` stands for.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ConfigError: ``name`` is taken, or the builder lacks keyword-only ``num_classes``
            and ``weights``.

    Example:
        >>> @register_model("my-net", task="classify")  # doctest: +SKIP
        ... def my_net(*, num_classes=None, weights=None): ...
    """

    def decorate(builder: BuilderT) -> BuilderT:
        if name in _REGISTRY:
            taken = _REGISTRY[name][0]
            raise ConfigError(
                f"model name {name!r} is already registered (task {taken.task!r}); "
                "pick another name",
                field="name",
            )
        _check_builder(name, builder)
        _REGISTRY[name] = (ModelEntry(name, task, description, default_weights), builder)
        return builder

    return decorate


def _lookup(name: str) -> tuple[ModelEntry, Callable[..., nn.Module]]:
    """The registered entry and builder for ``name``, or a ConfigError with suggestions."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"unknown model {name!r}; {hint or 'list_models() shows every name'}", field="model"
    )


def _check_options(name: str, builder: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options that the builder does not take, naming those it does."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in ("num_classes", "weights")]
    for key in options:
        if key not in params:
            raise ConfigError(
                f"{name} takes no option {key!r}; it accepts {', '.join(accepted) or 'none'}",
                field=key,
            )


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: A name from :func:`list_models`.
        num_classes: Classes of the task head; ``None`` keeps the count of the weights
            (1000 for random init). A count that differs from pretrained weights loads
            them and then replaces the head, as fine-tuning recipes do.
        weights: ``None`` (random init), ``"DEFAULT"`` (the entry's default weights), a
            torchvision enum name, ``"hf:<repo-id-or-folder>"`` or a local file (see
            :mod:`visionkit.models.weights`).
        **kwargs: Builder options (``image_size``...); unknown ones are refused.

    Returns:
        The model (an :class:`~visionkit.models.ImageClassifier` for task ``classify``).

    Raises:
        ConfigError: Unknown name or option, bad ``num_classes``, or ``"DEFAULT"`` for a
            model without pretrained weights.
        WeightsError: The weights cannot be found, read or applied.

    Example:
        >>> model = create_model("cnn-small", num_classes=10)  # doctest: +SKIP
        >>> model(torch.zeros(2, 3, 32, 32)).shape  # doctest: +SKIP
        torch.Size([2, 10])
    """
    entry, builder = _lookup(name)
    if num_classes is not None and not _is_positive_int(num_classes):
        raise ConfigError(
            f"num_classes must be a positive int, got {num_classes!r}", field="num_classes"
        )
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)  # the config records plain strings
    if weights == "DEFAULT":
        if entry.default_weights is None:
            raise ConfigError(
                f"{name} has no pretrained weights; use weights=None or a weights file",
                field="weights",
            )
        weights = entry.default_weights
    _check_options(name, builder, kwargs)
    return builder(num_classes=num_classes, weights=weights, **kwargs)


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``task`` when given (empty if none)."""
    return sorted(n for n, (e, _) in _REGISTRY.items() if task is None or e.task == task)


def model_info(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name``; ConfigError with the closest names if unknown."""
    return _lookup(name)[0]
