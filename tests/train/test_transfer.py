"""Tests of visionkit.train.transfer: parsing, what trains, frozen BatchNorm statistics."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models import create_model
from visionkit.train.transfer import (
    STRATEGY_FORMS,
    Strategy,
    TransferReport,
    apply_strategy,
    parse_strategy,
)

STAGES = ("stem", "stage1", "stage2")


def _backbone() -> nn.Sequential:
    """Three conv stages with BatchNorm, pooled to 8 features."""

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        OrderedDict(
            stem=block(3, 4, 1),
            stage1=block(4, 6, 2),
            stage2=block(6, 8, 2),
            pool=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        )
    )


@pytest.fixture
def model(protocol_classifier) -> nn.Module:
    """The classifier protocol with 3 classes on :func:`_backbone`."""
    torch.manual_seed(0)
    return protocol_classifier(_backbone(), 8, STAGES)


def _names(module: nn.Module, prefix: str) -> set[str]:
    return {f"{prefix}.{name}" for name, _ in module.named_parameters()}


def _running_means(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: m.running_mean.clone()
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    }


@pytest.mark.parametrize(
    ("text", "kind", "size"),
    [
        ("linear", "linear", None),
        ("full", "full", None),
        ("partial:2", "partial", 2),
        (" LoRA:16 ", "lora", 16),
    ],
)
def test_parse_strategy_reads_every_form(text, kind, size):
    strategy = parse_strategy(text)
    assert (strategy.kind, strategy.size) == (kind, size)
    assert parse_strategy(str(strategy)) == strategy


@pytest.mark.parametrize(
    "text", ["", "fine", "linear:2", "partial", "partial:0", "lora:x", "lora:-1"]
)
def test_parse_strategy_refuses_other_text_and_lists_the_forms(text):
    with pytest.raises(ConfigError) as caught:
        parse_strategy(text)
    assert caught.value.field == "strategy"
    assert all(form in str(caught.value) for form in STRATEGY_FORMS)


def test_a_strategy_cannot_be_built_inconsistent():
    with pytest.raises(ConfigError):
        Strategy("partial")
    with pytest.raises(ConfigError):
        Strategy("full", 2)


def test_linear_trains_only_the_head(model):
    report = apply_strategy(model, "linear")

    assert set(report.trainable_names) == {"head.weight", "head.bias"}
    assert report.trainable == 8 * 3 + 3
    assert report.total == sum(p.numel() for p in model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None


def test_partial_trains_the_last_stages_and_the_head(model):
    one = apply_strategy(model, parse_strategy("partial:1"))
    assert set(one.trainable_names) == _names(model.backbone.stage2, "backbone.stage2") | {
        "head.weight",
        "head.bias",
    }
    two = apply_strategy(model, "partial:2")
    assert set(two.trainable_names) - set(one.trainable_names) == _names(
        model.backbone.stage1, "backbone.stage1"
    )
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())


def test_partial_beyond_the_stages_is_refused_and_leaves_the_model_alone(model):
    head = model.head
    with pytest.raises(ConfigError, match="4 stages but the model has 3") as caught:
        apply_strategy(model, "partial:4", num_classes=7)
    assert caught.value.field == "strategy"
    assert model.head is head and model.num_classes == 3
    assert all(p.requires_grad for p in model.parameters())


def test_lora_twice_is_refused_before_the_head_changes(model):
    apply_strategy(model, "lora:2")
    head = model.head
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        apply_strategy(model, "lora:2", num_classes=7)
    assert model.head is head


def test_full_trains_everything(model):
    apply_strategy(model, "linear")
    report = apply_strategy(model, "full")
    assert report.trainable == report.total
    assert set(report.trainable_names) == {name for name, _ in model.named_parameters()}


def test_lora_trains_adapters_and_head_only(model, protocol_classifier):
    report = apply_strategy(model, "lora:2")
    adapters = {name for name in report.trainable_names if ".lora_" in name}
    assert adapters and set(report.trainable_names) == adapters | {"head.weight", "head.bias"}
    assert report.total > sum(
        p.numel() for p in protocol_classifier(_backbone(), 8, STAGES).parameters()
    )


def test_head_is_replaced_only_when_the_class_count_changes(model):
    head = model.head
    apply_strategy(model, "linear", num_classes=3)
    assert model.head is head
    apply_strategy(model, "linear", num_classes=5)
    assert model.head is not head and model.head.out_features == 5
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    with pytest.raises(ConfigError) as caught:
        apply_strategy(model, "linear", num_classes=0)
    assert caught.value.field == "num_classes"


def test_frozen_batchnorm_keeps_its_statistics_in_train_mode(model):
    apply_strategy(model, "linear")
    x = torch.randn(6, 3, 8, 8) * 3 + 1
    before = _running_means(model)
    model.eval()
    expected = model(x)

    model.train()
    trained = model(x)

    assert all(torch.equal(before[name], mean) for name, mean in _running_means(model).items())
    # Frozen BatchNorm normalises with running statistics, so train mode changes nothing.
    torch.testing.assert_close(trained, expected)


def test_partial_updates_statistics_only_in_the_trained_stages(model):
    apply_strategy(model, "partial:1")
    before = _running_means(model)
    model.train()
    model(torch.randn(6, 3, 8, 8) * 3 + 1)
    changed = {n for n, m in _running_means(model).items() if not torch.equal(m, before[n])}
    assert changed == {"backbone.stage2.1"}


def test_a_later_full_strategy_unfreezes_the_statistics(model):
    apply_strategy(model, "linear")
    apply_strategy(model, "full")
    before = _running_means(model)
    model.train()
    model(torch.randn(6, 3, 8, 8) * 3 + 1)
    after = _running_means(model)
    assert not any(torch.equal(before[name], after[name]) for name in before)


def test_report_prints_one_line_of_trainable_over_total(model):
    report = apply_strategy(model, "linear")
    line = str(report)
    assert "\n" not in line
    assert f"strategy linear: 27 trainable / {report.total:,} total parameters" in line
    empty = TransferReport(Strategy("full"), 0, 0, ())
    assert "0 trainable / 0 total" in str(empty)


def test_a_model_outside_the_protocol_is_refused():
    with pytest.raises(ConfigError) as caught:
        apply_strategy(nn.Sequential(nn.Linear(2, 2)), "linear")
    assert caught.value.field == "model"
    assert "backbone" in str(caught.value)


@pytest.mark.parametrize("text", ["linear", "partial:2", "full", "lora:2"])
def test_exactly_the_reported_parameters_learn_in_a_registry_classifier(text):
    torch.manual_seed(0)
    model = create_model("cnn-small", num_classes=3, width=4)
    report = apply_strategy(model, text, num_classes=4)

    model.train()
    model(torch.randn(2, 3, 16, 16)).sum().backward()

    learning = {name for name, p in model.named_parameters() if p.grad is not None}
    assert learning == set(report.trainable_names)
    assert model.config.num_classes == 4
