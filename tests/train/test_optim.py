"""Tests of visionkit.train.optim: parameter groups, optimisers, warmup + cosine schedule."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.train.config import TrainConfig
from visionkit.train.optim import (
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    parameter_counts,
    parameter_groups,
)


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_schedule_equals_hand_worked_values():
    schedule = WarmupCosine(total_steps=10, warmup_steps=2, lr_final=0.1)
    # warmup: (s + 1) / 2; cosine: 0.1 + 0.9 * (1 + cos(pi * (s - 2) / 7)) / 2
    expected = {0: 0.5, 1: 1.0, 2: 1.0, 5: 0.1 + 0.45 * (1 + math.cos(3 * math.pi / 7)), 9: 0.1}
    for step, value in expected.items():
        assert schedule(step) == pytest.approx(value, abs=1e-12)
    assert schedule(5) == pytest.approx(0.6501344, abs=1e-7)
    assert schedule(20) == pytest.approx(0.1)  # past the end it stays at lr_final


def test_scheduler_sets_the_learning_rate_of_each_step():
    model = _model()
    config = TrainConfig(epochs=2, lr=0.2, warmup_epochs=0.4, lr_final=0.1, optimizer="sgd")
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=5)  # 10 steps, 2 warmup
    seen = []
    for _ in range(10):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert all(len(set(lrs)) == 1 for lrs in seen)  # every group follows the schedule
    lrs = [lrs[0] for lrs in seen]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.2)
    assert lrs[2] == pytest.approx(0.2) and lrs[9] == pytest.approx(0.02)
    assert lrs[5] == pytest.approx(0.2 * 0.6501344, abs=1e-7)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


def test_no_warmup_starts_at_the_peak():
    assert WarmupCosine(total_steps=4, warmup_steps=0, lr_final=0.0)(0) == 1.0
    assert WarmupCosine(total_steps=4, warmup_steps=0, lr_final=0.0)(3) == pytest.approx(0.0)


def test_groups_leave_biases_and_norms_undecayed_and_skip_frozen_parameters():
    model = _model()
    model[0].bias.requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    expected = {model[1].weight, model[1].bias, model[3].bias}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in expected}


def test_groups_honour_no_weight_decay_names():
    class WithToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 2, 3))
            self.proj = nn.Linear(3, 3, bias=False)

        def no_weight_decay(self) -> set[str]:
            return {"token"}

    model = WithToken()
    groups = parameter_groups(model, 0.1)
    assert [g["params"] for g in groups] == [[model.proj.weight], [model.token]]


def test_adamw_decays_weights_but_not_norms():
    model = _model()
    config = TrainConfig(lr=0.1, weight_decay=0.5, warmup_epochs=0)
    optimizer = build_optimizer(model, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    # With zero gradients AdamW only applies decoupled decay: w <- w * (1 - lr * wd).
    assert torch.allclose(model[0].weight, before["0.weight"] * 0.95)
    assert torch.equal(model[1].weight, before["1.weight"])
    assert torch.equal(model[3].bias, before["3.bias"])
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_adamw_is_fused_on_the_cpu_and_steps_as_the_per_tensor_loop_does():
    torch.manual_seed(0)
    fused_model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    looped_model = copy.deepcopy(fused_model)
    config = TrainConfig(lr=0.01, weight_decay=0.05, warmup_epochs=0)
    fused = build_optimizer(fused_model, config)
    looped = torch.optim.AdamW(
        parameter_groups(looped_model, 0.05), lr=0.01, betas=(0.9, 0.999), foreach=False
    )
    assert fused.defaults["fused"] and not looped.defaults["fused"]
    inputs = torch.randn(5, 8, 4)
    for batch in inputs:
        for model, optimizer in ((fused_model, fused), (looped_model, looped)):
            model(batch).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(fused_model.parameters(), looped_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    on_meta = build_optimizer(_model().to("meta"), config)  # no fused kernel there
    assert not on_meta.defaults["fused"]


def test_sgd_uses_nesterov_momentum():
    optimizer = build_optimizer(_model(), TrainConfig(optimizer="sgd", momentum=0.8))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["nesterov"]


def test_a_fully_frozen_model_is_refused():
    model = _model().requires_grad_(False)
    with pytest.raises(ConfigError, match="no parameters that require gradients"):
        build_optimizer(model, TrainConfig())


def test_parameter_counts():
    model = _model()
    model[0].requires_grad_(False)
    assert parameter_counts(model) == {"trainable": 8 + 10, "total": 112 + 8 + 10}
