"""FCN: the skip layers sharpen boundaries, and the 2x upsamplers start as bilinear."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from visionkit.models import create_model
from visionkit.models.segment._fcn import bilinear_upsampler

from .conftest import SHAPES_CLASSES, fit_and_score, shapes_tensors

STEPS, BATCH = 120, 16


@pytest.fixture(scope="module")
def shapes_96(tmp_path_factory):
    """128 training and 32 held-out ``shapes`` scenes at 96 px."""
    return shapes_tensors(tmp_path_factory.mktemp("shapes96"), train=128, val=32, side=96)


def _boundary_iou(name: str, data) -> float:
    """Boundary IoU on the held-out scenes after the same seeded AdamW run."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=SHAPES_CLASSES)
    scores = fit_and_score(model, data["train"], data["val"], STEPS, batch=BATCH)
    return scores["mboundary_iou"]


def test_fcn_8s_finds_boundaries_that_fcn_32s_misses(shapes_96):
    # Same backbone, seed, data order and step budget: only the skips differ.
    coarse = _boundary_iou("fcn-32s", shapes_96)
    fine = _boundary_iou("fcn-8s", shapes_96)
    assert fine > coarse + 0.01, (coarse, fine)


def test_the_variants_share_the_backbone_and_differ_in_skips():
    models = [create_model(n, num_classes=5) for n in ("fcn-32s", "fcn-16s", "fcn-8s")]
    backbones = [{k for k in m.state_dict() if k.startswith("backbone.")} for m in models]
    assert backbones[0] == backbones[1] == backbones[2]
    assert [len(m.head.score) for m in models] == [1, 2, 3]
    assert [len(m.head.up) for m in models] == [0, 1, 2]
    assert [m.head.stride for m in models] == [32, 16, 8]


def _ramps(channels: int, side: int) -> torch.Tensor:
    """A constant, a horizontal, a vertical and a diagonal linear ramp, one per channel."""
    y, x = torch.meshgrid(torch.arange(side * 1.0), torch.arange(side * 1.0), indexing="ij")
    ramps = [torch.full_like(x, 3.0), 0.5 * x, -0.25 * y, x + 2 * y]
    return torch.stack(ramps[:channels])[None]


@pytest.mark.parametrize("factor", [2, 4])
def test_the_upsampler_starts_as_bilinear_interpolation(factor):
    layer = bilinear_upsampler(4, factor)
    images = _ramps(4, 10)
    with torch.no_grad():
        up = layer(images)
    expected = F.interpolate(images, scale_factor=factor, mode="bilinear", align_corners=False)
    assert up.shape == expected.shape == (1, 4, 10 * factor, 10 * factor)
    inner = slice(factor, -factor)  # the borders see the zero padding
    torch.testing.assert_close(up[..., inner, inner], expected[..., inner, inner])
    assert not torch.allclose(up, expected)  # and really differ there: the test can fail


def test_fcn_8s_upsamplers_are_bilinear_and_learn():
    model = create_model("fcn-8s", num_classes=4)
    for layer in model.head.up:
        assert layer.weight.requires_grad
        torch.testing.assert_close(layer.weight, bilinear_upsampler(4, 2).weight)
