"""DeiT through transformers: built offline from a config, reloaded from save_pretrained folders."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from visionkit.models import create_model


def _images(side: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("prefix", ["hf:", ""])
def test_a_saved_tiny_deit_reloads_from_its_folder_with_identical_outputs(
    tmp_path, tiny_deit, prefix
):
    torch.manual_seed(0)
    model = create_model("deit-tiny", num_classes=3, image_size=32, config_overrides=tiny_deit)
    model.backbone.model.save_pretrained(tmp_path)

    again = create_model("deit-tiny", num_classes=3, image_size=32, weights=f"{prefix}{tmp_path}")
    assert again.training  # like every freshly built model
    assert again.config.weights == f"{prefix}{tmp_path}"
    again.head.load_state_dict(model.head.state_dict())  # the folder holds the encoder only
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.equal(again.forward_features(_images()), model.forward_features(_images()))
        assert torch.equal(again(_images()), model(_images()))


def test_a_hub_classifier_checkpoint_brings_its_head(tmp_path, tiny_deit):
    torch.manual_seed(0)
    config = ViTConfig(**tiny_deit, image_size=32, num_labels=4)
    reference = ViTForImageClassification(config).eval()
    reference.save_pretrained(tmp_path)

    model = create_model("deit-tiny", weights=f"hf:{tmp_path}", image_size=32).eval()
    assert model.num_classes == 4
    with torch.no_grad():
        torch.testing.assert_close(model(_images()), reference(pixel_values=_images()).logits)

    tuned = create_model("deit-tiny", weights=f"hf:{tmp_path}", image_size=32, num_classes=2)
    assert tuned.num_classes == 2 and torch.count_nonzero(tuned.head.bias) == 0


def test_a_bare_encoder_checkpoint_gets_a_new_head(tmp_path, tiny_deit):
    torch.manual_seed(0)
    create_model(
        "deit-tiny", image_size=32, config_overrides=tiny_deit
    ).backbone.model.save_pretrained(tmp_path)
    assert create_model("deit-tiny", weights=f"hf:{tmp_path}").num_classes == 1000


def test_inputs_of_another_size_interpolate_the_positions(tiny_deit):
    model = create_model("deit-small", num_classes=2, image_size=32, config_overrides=tiny_deit)
    assert model.eval()(_images(48)).shape == (2, 2)


def test_a_visionkit_file_of_a_deit_round_trips(tmp_path, tiny_deit):
    options = {"image_size": 32, "config_overrides": tiny_deit}
    model = create_model("deit-tiny", num_classes=3, **options).eval()
    torch.save(
        {"model": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "w.pt"
    )
    again = create_model("deit-tiny", weights=str(tmp_path / "w.pt"), **options).eval()
    with torch.no_grad():
        assert torch.equal(again(_images()), model(_images()))
