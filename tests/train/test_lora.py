"""Tests of visionkit.train.lora: exact start, frozen base, faithful merge, parameter count."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.train.lora import add_lora, lora_parameters, merge_lora

RANK = 2
STAGES = ("0", "2", "6")


def _backbone() -> nn.Sequential:
    """Conv, conv and linear layers (both kinds that LoRA adapts) to 10 features."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 10),
        nn.ReLU(),
    )


@pytest.fixture
def tiny(protocol_classifier):
    """Factory: ``tiny(backbone=None)``, the classifier protocol with 3 classes on
    ``backbone`` (10 features; :func:`_backbone` when None), stages ``0``, ``2``, ``6``."""

    def make(backbone: nn.Module | None = None) -> nn.Module:
        return protocol_classifier(_backbone() if backbone is None else backbone, 10, STAGES)

    return make


@pytest.fixture
def pair(tiny) -> tuple[nn.Module, nn.Module]:
    """(base model, an independent copy with LoRA adapters)."""
    torch.manual_seed(0)
    base = tiny()
    return base, add_lora(copy.deepcopy(base), RANK, alpha=4.0)


def _train(model: nn.Module, steps: int = 15) -> None:
    """A few AdamW steps on every parameter; frozen ones get no gradient, so stay put."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 8, 8, generator=generator)
    y = torch.randint(0, 3, (8,), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_the_adapted_model_starts_exactly_at_the_base_model(pair):
    base, adapted = pair
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(adapted(x), base(x))
    assert torch.equal(adapted.forward_features(x), base.forward_features(x))
    assert all(
        torch.count_nonzero(p) == 0 for n, p in lora_parameters(adapted).items() if "lora_B" in n
    )


def test_training_moves_the_adapters_and_never_the_base_weights(pair):
    base, adapted = pair
    _train(adapted)

    weights = {
        name.replace(".base_layer", ""): p
        for name, p in adapted.backbone.named_parameters()
        if ".lora_" not in name
    }
    originals = dict(base.backbone.named_parameters())
    assert weights.keys() == originals.keys()
    assert all(torch.equal(weights[name], originals[name]) for name in originals)
    x = torch.randn(4, 3, 8, 8)
    assert not torch.allclose(adapted.forward_features(x), base.forward_features(x))


def test_merged_and_unmerged_models_agree(pair):
    base, adapted = pair
    _train(adapted)
    x = torch.randn(4, 3, 8, 8)
    unmerged = adapted(x)

    merged = merge_lora(adapted)

    torch.testing.assert_close(merged(x), unmerged, atol=1e-5, rtol=0)
    assert merged.state_dict().keys() == base.state_dict().keys()
    assert [type(m) for m in merged.modules()] == [type(m) for m in base.modules()]
    assert lora_parameters(merged) == {}
    assert not hasattr(merged.backbone, "peft_config")


def test_trainable_count_follows_the_lora_formula_plus_the_head(pair):
    base, adapted = pair
    head = sum(p.numel() for p in base.head.parameters())
    expected = head
    for layer in base.backbone.modules():
        if isinstance(layer, nn.Linear):
            expected += RANK * (layer.in_features + layer.out_features)
        elif isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            expected += RANK * (layer.in_channels * kh * kw + layer.out_channels)

    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)

    assert trainable == expected
    assert sum(p.numel() for p in lora_parameters(adapted).values()) == expected - head
    assert all(p.requires_grad for p in adapted.head.parameters())


def test_the_protocol_survives_adaptation(pair):
    _, adapted = pair
    assert [type(stage).__name__ for stage in adapted.stages()] == ["Conv2d", "Conv2d", "Linear"]
    adapted.reset_classifier(5)
    assert adapted(torch.randn(2, 3, 8, 8)).shape == (2, 5)


@pytest.mark.parametrize(("target", "adapted"), [("linear", {"3"}), ("conv", {"0"})])
def test_target_chooses_the_layer_kind(target, adapted, tiny):
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )
    model = add_lora(tiny(backbone), RANK, target=target)
    assert {name.split(".")[1] for name in lora_parameters(model)} == adapted


def test_grouped_and_dilated_convolutions_stay_plain_and_frozen(tiny):
    backbone = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.Conv2d(4, 10, 3, padding=2, dilation=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    model = add_lora(tiny(backbone), RANK, target="conv")

    assert {name.split(".")[1] for name in lora_parameters(model)} == {"0"}
    assert type(model.backbone[1]) is nn.Conv2d and type(model.backbone[2]) is nn.Conv2d
    assert not any(p.requires_grad for p in model.backbone[2].parameters())
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": 2, "alpha": 0.0}, "alpha"),
        ({"rank": 2, "dropout": 1.0}, "dropout"),
        ({"rank": 2, "target": "attention"}, "target"),
    ],
)
def test_bad_arguments_name_their_field(kwargs, field, tiny):
    with pytest.raises(ConfigError) as caught:
        add_lora(tiny(), **kwargs)
    assert caught.value.field == field


def test_adapting_twice_or_merging_nothing_is_refused(pair):
    base, adapted = pair
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        add_lora(adapted, RANK)
    with pytest.raises(ConfigError, match="no LoRA adapters"):
        merge_lora(base)
    with pytest.raises(ConfigError) as caught:
        add_lora(nn.Sequential(nn.Linear(2, 2)), RANK)
    assert caught.value.field == "model"
