"""Transfer-learning strategies behind one flag: ``linear``, ``partial:N``, ``full``, ``lora:R``.

Every strategy is written once against the classifier protocol (``backbone``, ``head``,
``stages()``, ``reset_classifier``, ``num_classes``), so torchvision, transformers and
small models share it:

- ``linear``: train the head only, on a frozen backbone (a linear probe; with
  :mod:`visionkit.train.features` the backbone even runs once per image);
- ``partial:N``: train the last ``N`` backbone stages and the head;
- ``full``: train everything (fine-tuning);
- ``lora:R``: train rank-``R`` LoRA adapters in the backbone and the head
  (:mod:`visionkit.train.lora`).

Frozen means frozen statistics too. :func:`apply_strategy` gives every BatchNorm layer a
forward pre-hook that switches it to eval mode whenever its affine parameters do not
require gradients, so in a trainer's ``model.train()`` epoch a frozen BatchNorm still
normalises with, and never updates, its running statistics. The hook reads
``requires_grad`` at every call, so the trainer needs to do nothing, applying another
strategy later takes effect at once, and state-dict keys and parameter counts stay those
of the original model (unlike swapping in ``FrozenBatchNorm2d``). BatchNorm layers
without affine parameters are left as they are.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import Any

from torch import nn

from visionkit.errors import ConfigError
from visionkit.train.lora import add_lora

__all__ = ["STRATEGY_FORMS", "Strategy", "TransferReport", "apply_strategy", "parse_strategy"]

STRATEGY_FORMS = ("linear", "partial:N", "full", "lora:R")
"""The strategy strings :func:`parse_strategy` accepts (``N``, ``R``: integers >= 1)."""

_PATTERN = re.compile(r"(?P<kind>linear|full)|(?P<sized>partial|lora):(?P<size>\d+)")
_PROTOCOL = ("backbone", "head", "num_classes", "stages", "reset_classifier")
# BatchNorm layers that already carry the frozen-statistics hook, so it is added once.
_HOOKED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@dataclass(frozen=True)
class Strategy:
    """A parsed transfer strategy.

    Attributes:
        kind: ``"linear"``, ``"partial"``, ``"full"`` or ``"lora"``.
        size: ``N`` of ``partial:N`` (stages to train) or ``R`` of ``lora:R`` (rank);
            ``None`` for ``linear`` and ``full``.
    """

    kind: str
    size: int | None = None

    def __post_init__(self) -> None:
        if self.kind in ("partial", "lora"):
            valid = isinstance(self.size, int) and self.size >= 1
        else:
            valid = self.kind in ("linear", "full") and self.size is None
        if not valid:
            raise _unknown(f"{self.kind}:{self.size}")

    def __str__(self) -> str:
        return self.kind if self.size is None else f"{self.kind}:{self.size}"


@dataclass(frozen=True)
class TransferReport:
    """What a strategy left trainable; ``str()`` is the one line every run prints.

    Attributes:
        strategy: The strategy applied.
        trainable: Number of parameters (elements) that require gradients.
        total: Number of parameters (elements) in the model.
        trainable_names: Qualified names of the trainable parameter tensors.
    """

    strategy: Strategy
    trainable: int
    total: int
    trainable_names: tuple[str, ...]

    def __str__(self) -> str:
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        return (
            f"strategy {self.strategy}: {self.trainable:,} trainable / {self.total:,} total "
            f"parameters ({share:.2f}%)"
        )


def parse_strategy(text: str) -> Strategy:
    """Parse ``"linear"``, ``"partial:N"``, ``"full"`` or ``"lora:R"`` (case and spaces ignored).

    Raises:
        ConfigError: ``text`` is none of those forms (field ``strategy``).

    Example:
        >>> parse_strategy("partial:2")
        Strategy(kind='partial', size=2)
    """
    match = _PATTERN.fullmatch(str(text).strip().lower())
    if match is None:
        raise _unknown(text)
    if match["kind"]:
        return Strategy(match["kind"])
    return Strategy(match["sized"], int(match["size"]))


def apply_strategy(
    model: nn.Module, strategy: Strategy | str, *, num_classes: int | None = None
) -> TransferReport:
    """Make exactly the parameters that ``strategy`` trains require gradients, in place.

    The head is always trainable. When ``num_classes`` differs from ``model.num_classes``
    the head is replaced first (``model.reset_classifier``). BatchNorm layers whose
    parameters end up frozen keep their running statistics frozen during training (see
    the module notes). Build the optimiser after this call, from the parameters that
    require gradients.

    Args:
        model: A classifier following the protocol (``backbone``, ``head``,
            ``num_classes``, ``stages()``, ``reset_classifier``).
        strategy: A :class:`Strategy` or its text form.
        num_classes: Classes of the new task; ``None`` keeps the current head.

    Returns:
        A :class:`TransferReport` of trainable and total parameters.

    Raises:
        ConfigError: A bad strategy, ``num_classes`` below 1, a model outside the
            protocol, or ``partial:N`` with more stages than the model has. The model is
            unchanged when this is raised.

    Example:
        >>> report = apply_strategy(model, "partial:1", num_classes=10)  # doctest: +SKIP
        >>> print(report)  # strategy partial:1: 1,234 trainable / 56,789 total parameters ...
    """
    if not isinstance(strategy, Strategy):
        strategy = parse_strategy(strategy)
    _check_protocol(model)
    stages = list(model.stages())
    _check_request(strategy, len(stages), num_classes)
    if strategy.kind == "lora":
        add_lora(model, strategy.size)  # checks everything before it changes anything
    else:
        model.requires_grad_(strategy.kind == "full")
        if strategy.kind == "partial":
            for stage in stages[-strategy.size :]:
                stage.requires_grad_(True)
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    model.head.requires_grad_(True)
    _freeze_statistics_with_parameters(model)
    return _report(model, strategy)


def _report(model: nn.Module, strategy: Strategy) -> TransferReport:
    """Count trainable and total parameters of ``model`` as they stand now."""
    named = list(model.named_parameters())
    trainable = [(name, p) for name, p in named if p.requires_grad]
    return TransferReport(
        strategy=strategy,
        trainable=sum(p.numel() for _, p in trainable),
        total=sum(p.numel() for _, p in named),
        trainable_names=tuple(name for name, _ in trainable),
    )


def _unknown(text: object) -> ConfigError:
    """The error for a strategy that is none of :data:`STRATEGY_FORMS`."""
    forms = ", ".join(STRATEGY_FORMS)
    return ConfigError(
        f"unknown strategy {str(text)!r}; expected one of {forms} with N, R integers >= 1",
        field="strategy",
    )


def _check_protocol(model: Any) -> None:
    """Refuse a model that lacks a member of the classifier protocol."""
    missing = [name for name in _PROTOCOL if not hasattr(model, name)]
    if missing:
        raise ConfigError(
            f"{type(model).__name__} lacks {', '.join(missing)} of the classifier protocol",
            field="model",
        )


def _check_request(strategy: Strategy, n_stages: int, num_classes: int | None) -> None:
    """Refuse ``partial:N`` beyond the model's stages and a class count below 1."""
    if strategy.kind == "partial" and strategy.size > n_stages:
        raise ConfigError(
            f"{strategy} asks for {strategy.size} stages but the model has {n_stages}",
            field="strategy",
        )
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ConfigError(
            f"num_classes must be an int >= 1, got {num_classes!r}", field="num_classes"
        )


def _freeze_statistics_with_parameters(model: nn.Module) -> None:
    """Give every affine BatchNorm in ``model`` the frozen-statistics hook, once."""
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if is_norm and module.affine and module not in _HOOKED:
            module.register_forward_pre_hook(_eval_when_frozen)
            _HOOKED.add(module)


def _eval_when_frozen(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: a BatchNorm with frozen parameters runs in eval mode."""
    if module.training and not module.weight.requires_grad:
        module.train(False)
