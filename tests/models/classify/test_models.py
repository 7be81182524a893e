"""Smoke tests generated from the registry: every classification entry keeps the protocol."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.models import ImageClassifier, ModelConfig, create_model, list_models

SIDE = 32  # small enough for ViT-B/16 and ConvNeXt-T to stay cheap on a CPU


@pytest.fixture(scope="module", params=list_models("classify"))
def built(request) -> ImageClassifier:
    """Each entry built once for this module (pytest runs one entry's tests together)."""
    torch.manual_seed(0)
    return create_model(request.param, num_classes=3)


@pytest.fixture
def model(built) -> ImageClassifier:
    """A private copy of the built entry, in train mode, that a test may change."""
    return copy.deepcopy(built).train()


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def test_train_mode_forward_and_backward_reach_every_parameter(model):
    assert isinstance(model, ImageClassifier) and model.training
    logits = model(_images())
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []


def test_eval_mode_is_deterministic_and_composes_features_and_head(model):
    model.eval()
    x = _images()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert features.shape == (2, model.feature_dim)
        assert torch.equal(model(x), logits)
        torch.testing.assert_close(model.forward_head(features), logits)


def test_reset_classifier_gives_a_new_zero_bias_head(model):
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.config.num_classes == 5
    assert torch.count_nonzero(model.head.bias) == 0
    assert model.eval()(_images()).shape == (2, 5)


def test_stages_run_in_order_and_own_every_backbone_parameter(model):
    stages = model.stages()
    assert len(stages) == len(model.stage_names) >= 2
    owners = {}
    for name, stage in zip(model.stage_names, stages, strict=True):
        for param in stage.parameters():
            assert id(param) not in owners, f"{name} shares a parameter with {owners[id(param)]}"
            owners[id(param)] = name
    assert {id(p) for p in model.backbone.parameters()} == set(owners)

    order = []
    hooks = [
        stage.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, stage in zip(model.stage_names, stages, strict=True)
    ]
    with torch.no_grad():
        model.eval()(_images(1))
    for hook in hooks:
        hook.remove()
    assert order == list(model.stage_names)


def test_the_config_rebuilds_the_same_architecture(model):
    config = ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config and config.task == "classify" and config.weights is None
    assert len(config.mean) == len(config.std) == 3 and config.image_size > 0
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        rebuilt = create_model(config.name, num_classes=config.num_classes, **config.kwargs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
