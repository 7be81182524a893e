"""Segmentation backbones: strides with and without dilation, and ImageNet weights loading."""

from __future__ import annotations

import pytest
import torch
import torchvision

from visionkit.errors import ConfigError, WeightsError
from visionkit.models._hub import torchvision_cache_path
from visionkit.models.segment._backbones import build_backbone


@pytest.mark.parametrize("name", ["vgg-small", "resnet18", "mobilenet_v3_large"])
def test_the_four_feature_maps_have_strides_4_to_32(name):
    backbone = build_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 128, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    assert [f.shape[1] for f in features] == list(backbone.channels)


@pytest.mark.parametrize(
    ("dilate", "sides"), [((False, True), [32, 16, 8, 8]), ((True, True), [32, 16, 16, 16])]
)
def test_dilation_keeps_the_last_stages_at_a_finer_stride(dilate, sides):
    for name in ("vgg-small", "resnet50"):
        with torch.no_grad():
            features = build_backbone(name, dilate=dilate).eval()(torch.randn(1, 3, 128, 128))
        assert [f.shape[-1] for f in features] == sides, name


def test_imagenet_weights_load_from_the_cache(empty_caches):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    classifier = torchvision.models.resnet18()
    path = torchvision_cache_path(weights.url)
    path.parent.mkdir(parents=True)
    torch.save(classifier.state_dict(), path)
    backbone = build_backbone("resnet18", weights="IMAGENET1K_V1")
    torch.testing.assert_close(
        backbone.stages[4][1].conv2.weight, classifier.layer4[1].conv2.weight
    )
    path.unlink()
    with pytest.raises(WeightsError, match=path.name):
        build_backbone("resnet18", weights="IMAGENET1K_V1")


def test_unknown_backbones_and_weights_for_vgg_small_are_refused():
    with pytest.raises(ConfigError, match="backbone"):
        build_backbone("vgg16")
    with pytest.raises(ConfigError, match="weights_backbone"):
        build_backbone("vgg-small", weights="DEFAULT")
