"""Tests of visionkit.train.ema: the decay ramp, the average, buffers and state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit.train.ema import ModelEMA


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_decay_ramps_up_to_the_configured_value():
    ema = ModelEMA(_model(), decay=0.95)
    decays = []
    for _ in range(200):
        decays.append(ema.current_decay())
        ema.updates += 1
    assert decays[0] == pytest.approx(0.1) and decays[10] == pytest.approx(11 / 20)
    assert decays[-1] == 0.95 and decays == sorted(decays)


def test_update_moves_the_average_towards_the_model_by_one_minus_decay():
    model = _model()
    ema = ModelEMA(model, decay=0.5)
    ema.updates = 1000  # past the ramp: decay 0.5
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, start + 0.5)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, start + 0.75)
    assert ema.updates == 1002


def test_integer_buffers_are_copied_and_float_buffers_averaged():
    model = _model()
    ema = ModelEMA(model, decay=0.9)
    model.train()
    model(torch.randn(8, 3))  # BatchNorm: running stats move, num_batches_tracked = 1
    ema.update(model)  # first update: decay 0.1
    bn, average = model[1], ema.module[1]
    assert average.num_batches_tracked.item() == 1
    expected = 0.1 * torch.zeros(2) + 0.9 * bn.running_mean
    assert torch.allclose(average.running_mean, expected)


def test_average_is_a_frozen_independent_copy_in_eval_mode():
    model = _model()
    ema = ModelEMA(model, decay=0.9)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        model[0].weight.zero_()
    assert not torch.equal(ema.module[0].weight, model[0].weight)


def test_state_round_trip():
    model = _model()
    ema = ModelEMA(model, decay=0.9)
    for _ in range(3):
        with torch.no_grad():
            model[0].weight.mul_(1.5)
        ema.update(model)
    again = ModelEMA(_model(), decay=0.9)
    again.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert again.updates == 3
    assert torch.equal(again.module[0].weight, ema.module[0].weight)
