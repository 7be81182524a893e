"""Torchvision segmenters: torchvision's own logits, weights from the cache, and offline misses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model
from visionkit.models._hub import torchvision_cache_path

SMALL = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50"]


def _cache_checkpoint(name: str, member: str = "DEFAULT", **options) -> torch.nn.Module:
    """Torchvision's model ``name``, randomly initialised, saved where its weights are cached.

    The checkpoint holds what torchvision's does (the auxiliary head included), so the
    builders read it as they would read the downloaded file.
    """
    weights = torchvision.models.get_model_weights(name)[member]
    net = torchvision.models.get_model(name, weights=None, **options).eval()
    with torch.no_grad():  # BatchNorm statistics other than the defaults
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    path = torchvision_cache_path(weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net


@pytest.mark.parametrize("name", SMALL)
def test_the_logits_are_torchvisions_out_for_the_same_weights(name, empty_caches):
    torch.manual_seed(0)
    aux = {} if name.startswith("lraspp") else {"aux_loss": True}
    net = _cache_checkpoint(name, num_classes=21, weights_backbone=None, **aux)
    model = create_model(name, weights="DEFAULT").eval()
    assert model.config.weights == "COCO_WITH_VOC_LABELS_V1" and model.num_classes == 21
    assert model.config.names[:2] == ("__background__", "aeroplane")
    images = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        expected = net(images)["out"]
        logits = model(images)
    assert logits.shape == (2, 21, 70, 90)
    torch.testing.assert_close(logits, expected)


def test_another_class_count_keeps_the_body_and_replaces_the_classifiers(empty_caches):
    torch.manual_seed(0)
    net = _cache_checkpoint("lraspp_mobilenet_v3_large", num_classes=21, weights_backbone=None)
    model = create_model("lraspp_mobilenet_v3_large", weights="DEFAULT", num_classes=3)
    assert model.num_classes == 3 and model.config.names is None
    assert model.net.classifier.low_classifier.out_channels == 3
    expected = net.state_dict()
    for key, value in model.net.backbone.state_dict().items():
        torch.testing.assert_close(value, expected[f"backbone.{key}"])
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_backbone_weights_load_into_the_backbone(empty_caches):
    torch.manual_seed(0)
    classifier = _cache_checkpoint("mobilenet_v3_large", "IMAGENET1K_V1")
    model = create_model(
        "deeplabv3_mobilenet_v3_large", num_classes=4, weights_backbone="IMAGENET1K_V1"
    )
    expected = classifier.features.state_dict()
    loaded = model.net.backbone.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, expected[key])
    assert "weights_backbone" not in model.config.kwargs


@pytest.mark.parametrize(
    ("options", "file"),
    [
        ({"weights": "DEFAULT"}, "lraspp_mobilenet_v3_large-d234d4ea.pth"),
        ({"weights_backbone": "IMAGENET1K_V1"}, "mobilenet_v3_large-8738ca79.pth"),
    ],
)
def test_missing_weights_offline_name_the_file_to_place(options, file, empty_caches):
    with pytest.raises(WeightsError) as error:
        create_model("lraspp_mobilenet_v3_large", **options)
    message = str(error.value)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    assert file in message and str(folder) in message and "VISIONKIT_OFFLINE" in message


def test_a_visionkit_weights_file_rebuilds_the_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("deeplabv3_mobilenet_v3_large", num_classes=5).eval()
    file = tmp_path / "model.pt"
    torch.save(model.state_dict(), file)
    loaded = create_model("deeplabv3_mobilenet_v3_large", weights=str(file)).eval()
    assert loaded.num_classes == 5
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_weights_and_backbone_weights_together_are_refused():
    with pytest.raises(ConfigError, match="weights_backbone"):
        create_model("fcn_resnet50", weights="DEFAULT", weights_backbone="DEFAULT")
