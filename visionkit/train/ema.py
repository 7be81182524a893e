"""An exponential moving average of a model's weights, updated after every optimiser step.

The average of the last few thousand steps' weights generalises better than the weights of
any one step (Polyak and Juditsky, 1992; used by YOLOv5 onwards and timm's ``ModelEmaV2``),
so when it is on the trainer evaluates and saves the average instead of the raw weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """A frozen copy of a model whose floating-point weights and buffers trail the model's.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))``: early on, when
    the weights move fast and the average would be mostly the random initialisation, it
    follows the model closely (TensorFlow's ``ExponentialMovingAverage(num_updates=)``).
    Integer buffers (a BatchNorm's step count) are copied as they are.

    Args:
        model: The model being trained (unwrapped from ``DistributedDataParallel``).
        decay: The decay once warmed up, in ``(0, 1)``.

    Example:
        >>> ema = ModelEMA(model, decay=0.999)  # doctest: +SKIP
        >>> optimizer.step(); ema.update(model)  # doctest: +SKIP
        >>> evaluate(ema.module)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights by one step."""
        weight = 1 - self.current_decay()
        source = model.state_dict()
        averages, sources = [], []
        for name, average in self.module.state_dict().items():
            if average.is_floating_point():
                averages.append(average)
                sources.append(source[name].detach())
            else:
                average.copy_(source[name])
        if averages:  # one call: a loop over the tensors costs more than the arithmetic
            torch._foreach_lerp_(averages, sources, weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The update count (the averaged weights are the checkpoint's ``"model"``)."""
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        """Restore the update count and the averaged ``weights``."""
        self.updates = int(state["updates"])
        self.module.load_state_dict(weights)
