"""Segmenter: output shapes, masks from class embeddings, the encoder as visionkit's ViT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit.errors import ConfigError
from visionkit.models import create_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("segmenter", num_classes=4, image_size=64).eval()


@pytest.mark.parametrize("size", [(64, 64), (70, 90), (8, 8)])
def test_logits_cover_the_input_at_any_size(model, size):
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 4, *size)
    with torch.no_grad():
        tokens = model.patch_tokens(torch.randn(2, 3, 64, 64))
    assert tokens.shape == (2, 8 * 8, 64)  # 8-px patches, the CLS token dropped


def test_masks_are_cosine_similarities_of_patches_and_classes(model):
    model.head.mask_norm = nn.Identity()
    with torch.no_grad():
        masks = model.decoder(torch.randn(1, 16, 64), (4, 4), model.head)
    assert masks.shape == (1, 4, 4, 4)
    assert masks.abs().max() <= 1 + 1e-5 and masks.std() > 1e-3


def test_swapping_two_class_embeddings_swaps_their_masks(model):
    images = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        logits = model(images)
        model.head.embeddings[[0, 2]] = model.head.embeddings[[2, 0]].clone()
        swapped = model(images)
    torch.testing.assert_close(swapped[:, [2, 1, 0, 3]], logits, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(swapped, logits, atol=1e-3)


def test_changing_one_class_embedding_changes_every_mask(model):
    # The class embeddings attend to each other and to the patches in the decoder.
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        model.head.embeddings[1] += torch.randn(64)
        changed = (model(images) - logits).abs().amax((0, 2, 3))
    assert (changed > 1e-4).all()


def test_the_encoder_is_the_vit_classifier_with_its_weights(tmp_path):
    torch.manual_seed(0)
    classifier = create_model("vit-tiny", num_classes=10, image_size=64, patch_size=8)
    torch.save(classifier.state_dict(), tmp_path / "vit.pt")
    model = create_model(
        "segmenter", num_classes=3, image_size=64, weights_encoder=str(tmp_path / "vit.pt")
    )
    encoder = classifier.backbone.state_dict()
    assert encoder.keys() == model.encoder.state_dict().keys()
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder[key])
    assert "weights_encoder" not in model.config.kwargs


def test_bad_encoder_options_are_refused():
    with pytest.raises(ConfigError, match="encoder"):
        create_model("segmenter", encoder="vit-huge")
    with pytest.raises(ConfigError, match="patch_size"):
        create_model("segmenter", encoder="vit_b_16", patch_size=8)
