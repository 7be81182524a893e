"""U-Net: the decoder uses the encoder's skips, odd sizes work, and it fits a few scenes."""

from __future__ import annotations

import pytest
import torch

from visionkit.errors import ConfigError
from visionkit.models import create_model

from .conftest import SHAPES_CLASSES, fit_and_score

STEPS = 80


@pytest.mark.parametrize(
    ("upsampling", "stem_stride", "sides"),
    [("bilinear", 1, [61, 31, 16, 8, 4]), ("transposed", 1, [61, 31, 16, 8, 4]),
     ("bilinear", 2, [31, 16, 8, 4, 2]), ("bilinear", 4, [16, 8, 4, 2, 1])],
)  # fmt: skip
def test_the_decoder_concatenates_the_first_stage_features(upsampling, stem_stride, sides):
    torch.manual_seed(0)
    model = create_model("unet", num_classes=3, upsampling=upsampling, stem_stride=stem_stride)
    images = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        features = model.eval().encode(images)
        logits = model.decode(features)
        without_skip = model.decode([torch.zeros_like(features[0]), *features[1:]])
        full = model(images)
    assert [f.shape[-1] for f in features] == sides  # odd sides round up
    assert logits.shape[-1] == sides[0] and full.shape == (1, 3, 45, 61)
    changed = (logits - without_skip).abs().amax(1) > 1e-4
    assert changed.float().mean() > 0.9  # every pixel sees its own first-stage features


def test_the_cpu_sized_unet_runs_at_a_quarter_of_the_input_size():
    model = create_model("unet", num_classes=7)
    assert model.config.kwargs["stem_stride"] == 4
    assert [layer[0].stride for layer in model.stem] == [(2, 2), (2, 2), (1, 1)]
    with torch.no_grad():
        assert model.eval().forward_logits(torch.zeros(1, 3, 64, 96)).shape == (1, 7, 16, 24)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 20)])
def test_inputs_smaller_than_the_total_stride_work(size):
    torch.manual_seed(0)
    model = create_model("unet", num_classes=3)  # total stride 4 * 2**4 = 64
    images = torch.randn(2, 3, *size)
    logits = model.train()(images)
    assert logits.shape == (2, 3, *size)
    logits.sum().backward()  # train mode: BatchNorm sees two values at the 1x1 bottom


def test_fused_scores_add_every_deeper_decoder_stage_to_the_logits():
    torch.manual_seed(0)
    model = create_model("unet", num_classes=3).eval()  # fuse_scores by default
    assert [side.in_channels for side in model.head.sides] == [128, 64, 32]
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fused = model.forward_logits(images)
        for side in model.head.sides:  # silence the deep stages' scores
            torch.nn.init.zeros_(side.weight)
            torch.nn.init.zeros_(side.bias)
        plain = model.forward_logits(images)
        model.head.sides[0].bias.fill_(1.0)  # the deepest stage: a constant 1 everywhere
        shifted = model.forward_logits(images)
    assert (fused - plain).abs().amax() > 1e-3
    assert torch.allclose(shifted - plain, torch.ones_like(plain), atol=1e-5)
    assert len(create_model("unet", num_classes=3, fuse_scores=False).head.sides) == 0
    assert len(create_model("unet-l", num_classes=3).head.sides) == 0  # the paper's U-Net


def test_unet_l_has_the_papers_widths():
    model = create_model("unet-l", num_classes=2)
    assert model.stem[0][0].out_channels == 64
    assert model.down[-1][1][1][0].out_channels == 1024
    assert isinstance(model.up[0].up, torch.nn.ConvTranspose2d)
    assert model.config.kwargs["stem_stride"] == 1  # full resolution, as in the paper


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("depth", 0),
        ("base_width", 2.5),
        ("upsampling", "nearest"),
        ("stem_stride", 3),
        ("fuse_scores", "yes"),
    ],
)
def test_bad_options_are_refused_by_name(option, value):
    with pytest.raises(ConfigError, match=option):
        create_model("unet", **{option: value})


def test_unet_overfits_a_few_shapes_scenes(shapes_64):
    images, masks = shapes_64["train"]
    images, masks = images[:8], masks[:8]
    torch.manual_seed(0)
    model = create_model("unet", num_classes=SHAPES_CLASSES, stem_stride=1)  # 64 px: full size
    scores = fit_and_score(model, (images, masks), (images, masks), STEPS)
    assert scores["miou"] > 0.8
