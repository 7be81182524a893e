"""predict_prompts: SAM from a saved folder on a folder of images, masks and overlays saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.api._sam import DEFAULT_OUT, draw_prompt_masks, predict_prompts
from visionkit.errors import ConfigError, WeightsError
from visionkit.models.foundation import load_sam


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM (64-pixel input, one encoder layer) written by save_pretrained."""
    from transformers import SamConfig, SamModel

    config = SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "mlp_dim": 64, "image_size": 64, "patch_size": 8, "output_channels": 32,
                       "global_attn_indexes": [0], "num_pos_feats": 16,
                       "initializer_range": 0.3},
        prompt_encoder_config={"hidden_size": 32, "image_size": 64, "patch_size": 8,
                               "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 32, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 16},
        initializer_range=0.3,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sam")
    SamModel(config).save_pretrained(folder)
    return folder


def _image(height: int, width: int, seed: int) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] += 150
    return image


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder of two images of different, non-square sizes: a.png 90 x 130, b.png 70 x 50."""
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_image(90, 130, 0)).save(folder / "a.png")
    Image.fromarray(_image(70, 50, 1)).save(folder / "b.png")
    return folder


def test_every_image_gets_masks_at_its_size_and_saved_pictures(sam_folder, images, tmp_path):
    out = tmp_path / "out"
    results = predict_prompts(str(sam_folder), images, points=[(20.0, 30.0)], save=True, out=out)
    predictor = load_sam(sam_folder)
    for name, result in zip(("a", "b"), results, strict=True):
        image = np.asarray(Image.open(images / f"{name}.png"))
        assert result.masks.shape == (3, *image.shape[:2])
        predictor.set_image(image)
        expected = predictor.predict(points=[(20.0, 30.0)])
        np.testing.assert_array_equal(result.masks, expected.masks)
        saved = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert saved.dtype == np.uint8 and set(np.unique(saved)) <= {0, 255}
        np.testing.assert_array_equal(saved == 255, result.masks[result.best])
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        np.testing.assert_array_equal(overlay, draw_prompt_masks(image, result))
        assert overlay.shape == image.shape


def test_the_overlay_tints_the_masks_and_leaves_the_rest():
    image = np.full((40, 60, 3), 100, np.uint8)
    masks = np.zeros((3, 40, 60), bool)
    masks[0, 5:15, 5:15] = True
    masks[2, 25:35, 40:55] = True  # mask 1 is empty: not drawn
    from visionkit.models.foundation import PromptMasks

    result = PromptMasks(masks, np.array([0.2, 0.9, 0.5], np.float32), np.zeros((3, 8, 8)))
    overlay = draw_prompt_masks(image, result)
    assert (overlay[8:12, 8:12] != image[8:12, 8:12]).any(axis=-1).all()
    assert (overlay[28:32, 44:52] != image[28:32, 44:52]).any(axis=-1).all()
    np.testing.assert_array_equal(overlay[30:, :30], image[30:, :30])  # far from both


def test_a_box_prompt_with_one_mask(sam_folder, images):
    results = predict_prompts(str(sam_folder), images, box=(5, 5, 40, 30), multimask=False)
    assert [r.masks.shape for r in results] == [(1, 90, 130), (1, 70, 50)]


def test_a_prompt_outside_one_image_names_that_file(sam_folder, images):
    with pytest.raises(ConfigError) as caught:  # inside a.png (130 wide), outside b.png (50)
        predict_prompts(str(sam_folder), images, points=[(100.0, 30.0)])
    assert caught.value.field == "points"
    assert caught.value.file == str(images / "b.png")


def test_save_without_out_writes_the_default_folder(sam_folder, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predict_prompts(str(sam_folder), images / "a.png", points=[(20.0, 30.0)], save=True)
    assert sorted(p.name for p in (tmp_path / DEFAULT_OUT).iterdir()) == [
        "a_mask.png",
        "a_overlay.png",
    ]


def test_repeated_stems_do_not_overwrite_each_other(sam_folder, images, tmp_path):
    (images / "sub").mkdir()
    Image.fromarray(_image(30, 30, 2)).save(images / "sub" / "a.png")
    out = tmp_path / "out"
    predict_prompts(str(sam_folder), images, points=[(10.0, 10.0)], save=True, out=out)
    assert sorted(p.name for p in out.glob("*_mask.png")) == [
        "a_2_mask.png",
        "a_mask.png",
        "b_mask.png",
    ]


def test_an_uncached_model_offline_is_a_weights_error(images, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    with pytest.raises(WeightsError, match="facebook/sam-vit-base"):
        predict_prompts("sam", images, points=[(10.0, 10.0)])
