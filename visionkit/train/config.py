"""The settings of one training run, validated once, recorded in ``args.yaml`` and checkpoints.

:class:`TrainConfig` holds what the loop needs and nothing task-specific beyond label
smoothing; a CLI or API builds it from user keys with :meth:`TrainConfig.from_dict`, so a
misspelt or out-of-range key fails before any model is built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionkit.errors import ConfigError

__all__ = ["OPTIMIZERS", "TrainConfig"]

Rule = Callable[[Any], "str | None"]
"""Checks one value: ``None`` when it is fine, else what is wrong with it."""

OPTIMIZERS = ("adamw", "sgd")
"""Optimiser names that :func:`visionkit.train.optim.build_optimizer` understands."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: schedule, optimiser, regularisation, stopping, devices and logging.

    Args:
        epochs: Passes over the training data.
        batch: Images per optimiser step over all processes (split evenly under torchrun).
        optimizer: ``"adamw"`` or ``"sgd"`` (SGD uses Nesterov momentum).
        lr: Peak learning rate, reached at the end of the warmup.
        weight_decay: Decoupled (AdamW) or L2 (SGD) decay; never applied to biases, norm
            layers or a model's ``no_weight_decay()`` names.
        momentum: SGD momentum; AdamW's ``beta1``.
        warmup_epochs: Linear warmup length in epochs (fractions allowed), per step.
        lr_final: Learning rate at the last step as a fraction of ``lr`` (cosine end point).
        grad_clip: Maximum gradient norm; ``None`` turns clipping off.
        amp: Mixed precision. ``True``: float16 autocast with loss scaling, on CUDA only
            (elsewhere full precision). ``"bf16"``: bfloat16 autocast on any device, no
            loss scaling needed; about 1.3x faster training on a CPU that computes bfloat16
            natively (AVX512-BF16 or AMX), slower on one that emulates it. ``False``: off.
        ema: Keep an exponential moving average of the weights, evaluated and saved in
            place of the raw weights.
        ema_decay: The average's decay per step.
        patience: Stop after this many epochs without a better fitness; ``None`` = never.
            Needs ``val``.
        time: Training budget in hours (as Ultralytics' ``time``); ``None`` = off. It
            replaces ``epochs`` as the run's length: after each epoch's training the run
            plans the optimiser steps that fit the budget at the mean time per step so
            far (validations included), the learning-rate schedule stretches or shrinks to
            end with them, and the last epoch stops early where they end (``epochs`` is
            the first plan). With ``val=False`` the one validation comes on top. A resumed
            run keeps its plan and counts the time its checkpoint had spent.
        val: Validate after every epoch. ``False`` validates after the last epoch only
            (``best.pt`` is then the last weights), which leaves short runs, where the
            validation pass is a tenth of an epoch or more, more epochs in the same time.
        seed: Seeds every random number generator, the shuffling and the loader workers.
        deterministic: Ask torch for deterministic algorithms (exact resume needs it).
        workers: Data-loading worker processes per training process.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``.
        quiet: No progress bar and no printed lines.
        label_smoothing: Classification cross-entropy smoothing, in ``[0, 1)``.
        save_period: Also keep ``weights/epoch<N>.pt`` every this many epochs; ``None`` = off.

    Raises:
        ConfigError: A value has the wrong type or is out of range; names the field.

    Example:
        >>> TrainConfig(epochs=3, lr=0.01).to_dict()["lr"]
        0.01
    """

    epochs: int = 10
    batch: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    lr_final: float = 0.01
    grad_clip: float | None = None
    amp: bool | str = True
    ema: bool = False
    ema_decay: float = 0.9999
    patience: int | None = None
    time: float | None = None
    val: bool = True
    seed: int = 0
    deterministic: bool = True
    workers: int = 2
    device: str = "auto"
    quiet: bool = False
    label_smoothing: float = 0.0
    save_period: int | None = None

    def __post_init__(self) -> None:
        for name, rule in _RULES.items():
            problem = rule(getattr(self, name))
            if problem:
                raise ConfigError(f"{problem}, got {getattr(self, name)!r}", field=name)
        if self.patience is not None and not self.val:
            raise ConfigError(
                f"early stopping needs validation after every epoch (val=true), "
                f"got {self.patience!r} with val=false",
                field="patience",
            )
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"must not exceed epochs ({self.epochs}), got {self.warmup_epochs!r}",
                field="warmup_epochs",
            )

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain values, for ``args.yaml`` and the resume comparison."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, source: str | Path | None = None
    ) -> TrainConfig:
        """Build from user keys, refusing unknown ones.

        Args:
            values: Field names to values; missing fields keep their defaults.
            source: The file the values came from, named in errors.

        Raises:
            ConfigError: An unknown key (named), or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"unknown training setting; expected one of {', '.join(sorted(known))}",
                    file=source,
                    field=str(key),
                )
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(error.message, file=source, field=error.field) from None


def _number(
    low: float, high: float = math.inf, *, integer: bool = False, closed: str = "[]"
) -> Rule:
    """A rule accepting numbers in the interval ``low..high`` (``closed`` says which ends)."""
    kind = "an integer" if integer else "a number"
    left, right = closed

    def rule(value: Any) -> str | None:
        types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"must be {kind}"
        inside_low = value >= low if left == "[" else value > low
        inside_high = value <= high if right == "]" else value < high
        if not (inside_low and inside_high and math.isfinite(value)):
            return f"must be {kind} in {left}{low}, {high}{right}"
        return None

    return rule


def _optional(rule: Rule) -> Rule:
    """``rule``, also accepting ``None`` (the setting is off)."""
    return lambda value: None if value is None else rule(value)


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _amp(value: Any) -> str | None:
    return None if isinstance(value, bool) or value == "bf16" else "must be true, false or bf16"


def _choice(options: tuple[str, ...]) -> Rule:
    return lambda value: None if value in options else f"must be one of {', '.join(options)}"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


_RULES = {
    "epochs": _number(1, integer=True),
    "batch": _number(1, integer=True),
    "optimizer": _choice(OPTIMIZERS),
    "lr": _number(0, closed="(]"),
    "weight_decay": _number(0),
    "momentum": _number(0, 1, closed="[)"),
    "warmup_epochs": _number(0),
    "lr_final": _number(0, 1),
    "grad_clip": _optional(_number(0, closed="(]")),
    "amp": _amp,
    "ema": _flag,
    "ema_decay": _number(0, 1, closed="()"),
    "patience": _optional(_number(1, integer=True)),
    "time": _optional(_number(0, closed="(]")),
    "val": _flag,
    "seed": _number(0, 2**63 - 1, integer=True),
    "deterministic": _flag,
    "workers": _number(0, integer=True),
    "device": _text,
    "quiet": _flag,
    "label_smoothing": _number(0, 1, closed="[)"),
    "save_period": _optional(_number(1, integer=True)),
}
