"""The classifier protocol: ModelConfig in plain types, the head, the stages."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models import ImageClassifier, ModelConfig, create_model


def _config(**changes) -> ModelConfig:
    fields = {
        "name": "toy",
        "task": "classify",
        "num_classes": 3,
        "image_size": 8,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "weights": None,
        "kwargs": {"width": 4},
    }
    return ModelConfig(**{**fields, **changes})


def _toy(drop_rate: float = 0.0) -> ImageClassifier:
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return ImageClassifier(backbone, nn.Linear(4, 3), _config(), ("0",), drop_rate)


def test_config_round_trips_through_json():
    config = _config(weights="hf:org/repo", kwargs={"config_overrides": {"hidden_size": 8}})
    data = json.loads(json.dumps(config.to_dict()))
    assert data["mean"] == [0.5, 0.5, 0.5]
    assert ModelConfig.from_dict(data) == config


def test_config_keeps_a_detached_copy_of_the_options():
    options = {"width": 4}
    config = _config(kwargs=options)
    options["width"] = 99
    assert config.kwargs == {"width": 4}


def test_config_refuses_options_that_are_not_json():
    with pytest.raises(ConfigError, match="JSON-able") as error:
        _config(kwargs={"layer": nn.Identity()})
    assert error.value.field == "kwargs"


def test_config_from_dict_names_a_missing_field():
    data = _config().to_dict()
    del data["image_size"]
    with pytest.raises(ConfigError) as error:
        ModelConfig.from_dict(data)
    assert error.value.field == "image_size"
    with pytest.raises(ConfigError, match="must be a dict"):
        ModelConfig.from_dict([1, 2])


def test_reset_classifier_keeps_device_and_dtype_and_refuses_nonsense():
    model = _toy().double()
    model.reset_classifier(7)
    assert model.head.weight.dtype == torch.float64 and model.head.out_features == 7
    assert model.config.num_classes == 7 and model.config.kwargs == {"width": 4}
    for bad in (0, -2, True, 2.5):
        with pytest.raises(ConfigError, match="positive int"):
            model.reset_classifier(bad)


def test_head_dropout_acts_in_train_mode_only_and_never_on_features():
    torch.manual_seed(0)
    model = _toy(drop_rate=0.5).train()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(model.forward_features(x), model.forward_features(x))
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_a_stage_name_that_does_not_resolve_is_refused():
    backbone = nn.Sequential(nn.Flatten(1))
    with pytest.raises(ConfigError, match="stage name") as error:
        ImageClassifier(backbone, nn.Linear(4, 3), _config(), ("layer9",))
    assert error.value.field == "stage_names"


def test_a_head_that_disagrees_with_the_config_is_refused():
    with pytest.raises(ConfigError, match="head has 5 outputs"):
        ImageClassifier(nn.Flatten(1), nn.Linear(4, 5), _config(), ())


def test_builders_record_their_options_and_normalisation():
    model = create_model("resnet18", num_classes=4, image_size=96)
    assert model.config.kwargs == {"image_size": 96} and model.config.image_size == 96
    assert model.config.mean == (0.485, 0.456, 0.406)
    assert model.config.name == "resnet18" and model.config.num_classes == 4
