"""The JSON-able record of how a model was built, shared by every task's models.

A checkpoint stores :class:`ModelConfig` next to the weights, so
:func:`~visionkit.models.create_model` rebuilds the same architecture before loading them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from visionkit.errors import ConfigError

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """How a model was built, in plain types: stored in checkpoints to rebuild it.

    Attributes:
        name: Registry name (``create_model(name, ...)``).
        task: Registry task (``"classify"``, ``"detect"``...).
        num_classes: Classes the model tells apart (``C`` in a classifier's logits ``[B, C]``;
            a detector's object classes, background not counted).
        image_size: Square input side the model is meant for, in pixels.
        mean: Per-channel RGB mean the inputs are normalised with (0-1 pixel scale).
        std: Per-channel RGB standard deviation of that normalisation.
        weights: The weights spec the model was built with, ``None`` for random init.
        kwargs: The builder options, JSON-able (``create_model(name, **kwargs)``).
        names: Class names in logit order, when known (set by training on a dataset, so a
            checkpoint predicts names, not only indices); one per class.
    """

    name: str
    task: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.names is not None:
            object.__setattr__(self, "names", tuple(str(n) for n in self.names))
            if len(self.names) != self.num_classes:
                raise ConfigError(
                    f"{len(self.names)} class names for {self.num_classes} classes", field="names"
                )
        try:
            plain = json.loads(json.dumps(self.kwargs))  # a detached, JSON-able copy
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"builder options must be JSON-able: {error}", field="kwargs"
            ) from None
        object.__setattr__(self, "kwargs", plain)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        """The config as a dict of plain types (lists for mean and std)."""
        data = dataclasses.asdict(self)
        names = None if self.names is None else list(self.names)
        return {**data, "mean": list(self.mean), "std": list(self.std), "names": names}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; ConfigError names a missing field."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for required in names[:6]:
            if required not in data:
                raise ConfigError("missing from the model config", field=required)
        return cls(**{k: data[k] for k in names if k in data})
