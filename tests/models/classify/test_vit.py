"""The ViT backbone: positions resampled for other input sizes; the small from-scratch ViTs."""

from __future__ import annotations

import pytest
import torch

from visionkit.errors import ConfigError, WeightsError
from visionkit.models import create_model
from visionkit.models.classify._vit import resample_pos_embed


def test_resampling_to_the_same_grid_is_the_identity():
    pos = torch.randn(1, 1 + 4 * 4, 8)
    assert resample_pos_embed(pos, (4, 4)) is pos


def test_resampling_keeps_the_cls_position_and_a_smooth_grid():
    ramp = torch.linspace(0, 1, 4)
    grid = ramp[:, None].expand(4, 4)  # rows 0 .. 1
    pos = torch.cat([torch.full((1, 1), 7.0), grid.reshape(1, 16)], dim=1)[..., None]
    out = resample_pos_embed(pos, (8, 6))
    assert out.shape == (1, 1 + 8 * 6, 1)
    assert out[0, 0, 0] == 7.0
    rows = out[0, 1:, 0].reshape(8, 6)
    assert torch.allclose(rows, rows[:, :1].expand(8, 6))  # constant along each row
    assert torch.all(rows[1:, 0] >= rows[:-1, 0])  # still increasing down the columns


def test_other_input_sizes_work_without_changing_the_parameters():
    model = create_model("vit-tiny", num_classes=3, image_size=32, patch_size=4).eval()
    assert model.backbone.embed.pos_embed.shape == (1, 1 + 8 * 8, 64)
    for side in (16, 32, 48):
        assert model(torch.randn(2, 3, side, side)).shape == (2, 3)
    assert model.backbone.embed.pos_embed.shape == (1, 1 + 8 * 8, 64)


def test_a_file_made_at_another_image_size_names_the_positions(tmp_path):
    path = tmp_path / "vit.pt"
    torch.save(create_model("vit-tiny", num_classes=3, image_size=32).state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"\(1, 65, 64\) in the weights but \(1, 17, 64\)"
    ) as error:
        create_model("vit-tiny", image_size=16, weights=str(path))
    assert error.value.field == "backbone.embed.pos_embed"


@pytest.mark.parametrize("patch_size", [0, 64])
def test_a_patch_larger_than_the_image_is_refused(patch_size):
    with pytest.raises(ConfigError, match="patch_size") as error:
        create_model("vit-small", image_size=32, patch_size=patch_size)
    assert error.value.field == "patch_size"
