"""Torchvision classifiers, regrouped into ImageClassifier, still compute torchvision logits."""

from __future__ import annotations

import pytest
import torch
import torchvision

from visionkit.models import create_model, list_models
from visionkit.models.classify import _torchvision

# Every registered classifier that torchvision builds too (the full catalogue is pinned in
# tests/models/test_registry.py).
TORCHVISION = [n for n in list_models("classify") if n in torchvision.models.list_models()]


@pytest.fixture(scope="module")
def reference():
    """Randomly initialised torchvision models in eval mode, built once per name."""
    built = {}

    def get(name: str) -> torch.nn.Module:
        if name not in built:
            torch.manual_seed(0)
            built[name] = torchvision.models.get_model(name, weights=None).eval()
        return built[name]

    return get


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_weights_give_torchvision_logits(name, reference, empty_caches, monkeypatch):
    net = reference(name)
    monkeypatch.setattr(_torchvision, "read_state_dict", lambda source: net.state_dict())
    model = create_model(name, weights="DEFAULT").eval()
    assert model.num_classes == 1000 and model.config.weights == "DEFAULT"
    side = 224 if name == "vit_b_16" else 64  # torchvision's ViT takes its own size only
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def test_weights_in_the_hub_cache_load_offline(reference, empty_caches):
    net = reference("resnet18")
    cached = empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(net.state_dict(), cached)
    x = torch.randn(2, 3, 64, 64)

    model = create_model("resnet18", weights="IMAGENET1K_V1").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))

    tuned = create_model("resnet18", weights="DEFAULT", num_classes=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(tuned.forward_features(x), model.forward_features(x))
    assert tuned.num_classes == 4 and torch.count_nonzero(tuned.head.bias) == 0


def test_vit_weights_are_resampled_to_the_image_size(reference, empty_caches, monkeypatch):
    net = reference("vit_b_16")
    monkeypatch.setattr(_torchvision, "read_state_dict", lambda source: net.state_dict())
    model = create_model("vit_b_16", weights="DEFAULT", image_size=32, num_classes=2)
    pos = model.backbone.embed.pos_embed
    assert pos.shape == (1, 1 + 2 * 2, 768) and model.config.image_size == 32
    assert torch.equal(pos[:, 0], net.encoder.pos_embedding[:, 0])  # CLS position kept
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_mobilenet_dropout_moves_before_the_head():
    model = create_model("mobilenet_v3_small", num_classes=2)
    assert model.head_drop.p == 0.2
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.backbone.modules())
