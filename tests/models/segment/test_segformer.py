"""SegFormer: quarter-size logits upsampled as transformers does, hub folders, offline misses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import transformers

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model

TINY = {
    "hidden_sizes": [8, 16, 24, 32],
    "num_attention_heads": [1, 1, 1, 1],
    "depths": [1, 1, 1, 1],
    "decoder_hidden_size": 16,
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("segformer-b0", num_classes=4, config_overrides=TINY).eval()


@pytest.mark.parametrize(("size", "quarter"), [((64, 64), (16, 16)), ((70, 90), (18, 23))])
def test_quarter_size_logits_are_upsampled_bilinearly_to_the_input(model, size, quarter):
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        reference = model.net(pixel_values=images).logits
        logits = model(images)
    assert reference.shape == (2, 4, *quarter)
    expected = F.interpolate(reference, size=size, mode="bilinear", align_corners=False)
    assert logits.shape == (2, 4, *size)
    torch.testing.assert_close(logits, expected)


def _tiny_checkpoint(folder, labels: int) -> transformers.SegformerForSemanticSegmentation:
    """A tiny SegFormer with named labels, written with ``save_pretrained``."""
    config = transformers.SegformerConfig(
        **TINY,
        num_labels=labels,
        id2label={i: f"thing{i}" for i in range(labels)},
        label2id={f"thing{i}": i for i in range(labels)},
    )
    torch.manual_seed(1)
    net = transformers.SegformerForSemanticSegmentation(config).eval()
    net.save_pretrained(folder)
    return net


def test_a_saved_checkpoint_loads_and_its_architecture_is_recorded(tmp_path):
    net = _tiny_checkpoint(tmp_path / "tiny", labels=5)
    model = create_model("segformer-b0", weights=f"hf:{tmp_path / 'tiny'}").eval()
    assert model.num_classes == 5 and model.config.names == tuple(f"thing{i}" for i in range(5))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = F.interpolate(
            net(pixel_values=images).logits, size=(64, 64), mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(model(images), expected)
    assert model.config.kwargs["config_overrides"] == TINY
    rebuilt = create_model("segformer-b0", num_classes=5, **model.config.kwargs)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_another_class_count_gets_a_new_classifier(tmp_path):
    net = _tiny_checkpoint(tmp_path / "tiny", labels=5)
    model = create_model("segformer-b0", weights=f"hf:{tmp_path / 'tiny'}", num_classes=2)
    assert model.num_classes == 2 and model.config.names is None
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    encoder = net.segformer.state_dict()
    for key, value in model.net.segformer.state_dict().items():
        torch.testing.assert_close(value, encoder[key])


def test_a_visionkit_weights_file_loads_with_another_class_count(model, tmp_path):
    file = tmp_path / "model.pt"
    torch.save(model.state_dict(), file)
    same = create_model("segformer-b0", weights=str(file), config_overrides=TINY).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(images), model(images))
    other = create_model("segformer-b0", weights=str(file), num_classes=6, config_overrides=TINY)
    assert other.num_classes == 6 and other(images).shape == (1, 6, 32, 32)


def test_a_missing_hub_checkpoint_offline_names_the_folder(empty_caches):
    with pytest.raises(WeightsError, match="models--nvidia--segformer-b0-finetuned-ade-512-512"):
        create_model("segformer-b0", weights="DEFAULT")


def test_unknown_config_fields_are_refused():
    with pytest.raises(ConfigError, match="no_such_field"):
        create_model("segformer-b0", config_overrides={"no_such_field": 1})
