"""The model registry: duplicates refused, unknown names answered with the closest ones."""

from __future__ import annotations

import pytest
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models import ModelEntry, create_model, list_models, model_info, register_model

CLASSIFIERS = {
    "resnet18",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "convnext_tiny",
    "vit_b_16",
    "deit-tiny",
    "deit-small",
    "cnn-small",
    "vit-tiny",
    "vit-small",
}


def _linear(*, num_classes: int | None = None, weights: str | None = None) -> nn.Module:
    return nn.Linear(2, num_classes or 2)


def test_every_classification_family_registers_on_import():
    assert set(list_models("classify")) == CLASSIFIERS


def test_a_taken_name_is_refused(private_registry):
    register_model("dummy-net", task="classify")(_linear)
    with pytest.raises(ConfigError, match="'dummy-net' is already registered") as error:
        register_model("dummy-net", task="detect")(_linear)
    assert error.value.field == "name"
    with pytest.raises(ConfigError, match="already registered"):
        register_model("resnet18", task="classify")(_linear)
    assert model_info("dummy-net").task == "classify"  # the first registration stands


def test_a_builder_without_keyword_only_arguments_is_refused(private_registry):
    def positional(num_classes=None, weights=None):
        return nn.Identity()

    with pytest.raises(ConfigError, match="keyword-only 'num_classes'"):
        register_model("positional-net", task="classify")(positional)
    assert "positional-net" not in list_models()


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [("resnet-18", "resnet18"), ("deit_tiny", "deit-tiny"), ("cnn_small", "cnn-small")],
)
def test_an_unknown_name_suggests_the_closest(typo, suggested):
    with pytest.raises(ConfigError, match=f"did you mean '{suggested}'") as error:
        create_model(typo)
    assert error.value.field == "model"
    with pytest.raises(ConfigError, match=f"'{suggested}'"):
        model_info(typo)


def test_a_far_unknown_name_points_to_list_models():
    with pytest.raises(ConfigError, match=r"unknown model 'zzzz'; list_models\(\)"):
        create_model("zzzz")


def test_list_models_filters_by_task(private_registry):
    detectors = set(list_models("detect"))
    register_model("dummy-detector", task="detect")(_linear)
    assert set(list_models("detect")) == detectors | {"dummy-detector"}
    assert set(list_models("classify")) == CLASSIFIERS
    everything = list_models()
    assert everything == sorted(everything)
    segmenters = set(list_models("segment"))
    assert set(everything) == CLASSIFIERS | detectors | segmenters | {"dummy-detector"}
    assert list_models("no-such-task") == []


def test_create_model_passes_arguments_to_the_builder(private_registry):
    calls = []

    @register_model("recording-net", task="classify", default_weights="hf:org/repo")
    def recording(*, num_classes=None, weights=None, **options):
        calls.append((num_classes, weights, options))
        return nn.Identity()

    create_model("recording-net", num_classes=4, depth=3)
    create_model("recording-net", weights="DEFAULT")
    assert calls == [(4, None, {"depth": 3}), (None, "hf:org/repo", {})]


def test_an_unknown_option_is_refused_with_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"takes no option 'widht'.*width") as error:
        create_model("cnn-small", widht=8)
    assert error.value.field == "widht"


def test_default_weights_of_a_model_without_any_is_refused():
    with pytest.raises(ConfigError, match="cnn-small has no pretrained weights"):
        create_model("cnn-small", weights="DEFAULT")


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2.0])
def test_num_classes_must_be_a_positive_int(bad):
    with pytest.raises(ConfigError, match="num_classes must be a positive int") as error:
        create_model("cnn-small", num_classes=bad)
    assert error.value.field == "num_classes"


def test_model_info_describes_an_entry_without_building_it():
    assert model_info("resnet18") == ModelEntry(
        "resnet18", "classify", model_info("resnet18").description, "DEFAULT"
    )
    assert model_info("deit-tiny").default_weights == "hf:facebook/deit-tiny-patch16-224"
    assert model_info("cnn-small").default_weights is None
    assert all(model_info(name).description for name in CLASSIFIERS)
