"""cnn-small: any input side from 8 to 256 pixels, and it learns real digits in seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from sklearn.datasets import load_digits

from visionkit.errors import ConfigError
from visionkit.models import create_model


@pytest.mark.parametrize("downsample", ["stride", "max"])
@pytest.mark.parametrize("side", [8, 19, 256])
def test_any_input_side_gives_logits(side, downsample):
    model = create_model("cnn-small", num_classes=2, width=8, downsample=downsample).eval()
    assert model(torch.randn(1, 3, side, side)).shape == (1, 2)


def test_max_pooling_stages_keep_the_parameters_and_rebuild_from_their_config():
    strided = create_model("cnn-small", num_classes=3, width=8)
    pooled = create_model("cnn-small", num_classes=3, width=8, downsample="max").eval()
    assert sum(p.numel() for p in pooled.parameters()) == sum(
        p.numel() for p in strided.parameters()
    )
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    # A checkpoint rebuilds the model from the recorded options: same function.
    rebuilt = create_model("cnn-small", num_classes=3, **pooled.config.kwargs).eval()
    rebuilt.load_state_dict(pooled.state_dict())
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt(images), pooled(images))
    with pytest.raises(ConfigError, match="downsample"):
        create_model("cnn-small", downsample="avg")


def test_width_sets_the_feature_size_and_must_be_positive():
    assert create_model("cnn-small", width=8).feature_dim == 32
    with pytest.raises(ConfigError, match="width"):
        create_model("cnn-small", width=0)


def test_it_learns_digits_in_a_few_epochs():
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(16, 16), mode="bilinear").repeat(1, 3, 1, 1)
    images, labels = (images - 0.5) / 0.5, torch.tensor(digits.target)
    train, test = slice(0, 1000), slice(1000, 1400)

    model = create_model("cnn-small", num_classes=10, image_size=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(4):
        for batch in torch.randperm(1000).split(64):
            loss = F.cross_entropy(model(images[train][batch]), labels[train][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (model.eval()(images[test]).argmax(1) == labels[test]).float().mean()
    assert accuracy > 0.9
