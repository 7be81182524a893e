"""Tests of visionkit.train.config: validation names the field; dict round trip."""

from __future__ import annotations

import pytest

from visionkit.errors import ConfigError
from visionkit.train.config import TrainConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch", True),
        ("optimizer", "adam"),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("weight_decay", -0.1),
        ("momentum", 1.0),
        ("warmup_epochs", -1),
        ("lr_final", 1.5),
        ("grad_clip", 0),
        ("amp", "yes"),
        ("amp", "fp16"),
        ("ema_decay", 1.0),
        ("patience", 0),
        ("seed", -1),
        ("workers", -2),
        ("device", ""),
        ("label_smoothing", 1.0),
        ("save_period", 0),
    ],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    assert caught.value.field == field
    assert repr(value) in str(caught.value) and "\n" not in str(caught.value)


def test_warmup_longer_than_training_is_refused():
    with pytest.raises(ConfigError, match="must not exceed epochs") as caught:
        TrainConfig(epochs=2, warmup_epochs=3)
    assert caught.value.field == "warmup_epochs"


def test_early_stopping_without_validation_every_epoch_is_refused():
    with pytest.raises(ConfigError, match="val=true") as caught:
        TrainConfig(patience=3, val=False)
    assert caught.value.field == "patience"


def test_optional_settings_accept_none_and_numbers():
    config = TrainConfig(grad_clip=None, patience=None, save_period=None)
    assert TrainConfig(grad_clip=1, patience=3, save_period=2).grad_clip == 1
    assert config.patience is None


def test_dict_round_trip_and_unknown_keys():
    config = TrainConfig(epochs=4, lr=0.1, optimizer="sgd", grad_clip=2.0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown training setting") as caught:
        TrainConfig.from_dict({"epoch": 3}, source="args.yaml")
    assert caught.value.field == "epoch" and caught.value.file == "args.yaml"
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"lr": -1}, source="args.yaml")
    assert str(caught.value).startswith("args.yaml: field 'lr'")
