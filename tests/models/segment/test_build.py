"""The weights flow of visionkit's own segmenters: files, class-count changes, refusals."""

from __future__ import annotations

import pytest
import torch

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model

FAMILIES = ["unet", "fcn-8s", "deeplabv3plus", "segmenter"]


@pytest.mark.parametrize("name", FAMILIES)
def test_a_weights_file_rebuilds_the_model_with_its_class_count(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    file = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, file)
    loaded = create_model(name, weights=str(file)).eval()
    assert loaded.num_classes == 5 and loaded.config.weights == str(file)
    images = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


@pytest.mark.parametrize("name", FAMILIES)
def test_another_class_count_loads_the_body_and_starts_a_new_head(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    file = tmp_path / "model.pt"
    torch.save(model.state_dict(), file)
    loaded = create_model(name, weights=str(file), num_classes=2)
    assert loaded.num_classes == 2
    saved = model.state_dict()
    body = {k: v for k, v in loaded.state_dict().items() if not k.startswith("head.")}
    assert body and all(torch.equal(v, saved[k]) for k, v in body.items())
    assert loaded.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_random_init_has_pascal_voc_classes():
    assert create_model("unet").num_classes == 21


def test_weights_of_another_model_are_refused(tmp_path):
    file = tmp_path / "fcn.pt"
    torch.save(create_model("fcn-8s", num_classes=3).state_dict(), file)
    with pytest.raises(WeightsError, match=r"head\.weight"):
        create_model("unet", weights=str(file))


def test_weights_that_are_not_files_are_refused():
    with pytest.raises(WeightsError, match="hf weights"):
        create_model("unet", weights="hf:someone/unet")
    with pytest.raises(WeightsError, match="no such weights file"):
        create_model("unet", weights="missing/unet.pt")


def test_a_bad_image_size_is_refused():
    with pytest.raises(ConfigError, match="image_size"):
        create_model("unet", image_size=8)
