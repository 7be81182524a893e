"""load_sam and is_sam_spec: folders, hub names from the cache, and offline misses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visionkit.errors import ConfigError, WeightsError
from visionkit.models.foundation import SAM_CHECKPOINTS, SamPredictor, is_sam_spec, load_sam

IMAGENET = (0.485, 0.456, 0.406)  # SAM's standard normalisation mean
PROMPT = {"points": [(50, 40), (100, 70)], "point_labels": [1, 0], "box": (30, 20, 90, 60)}


def _answer(predictor: SamPredictor, image: np.ndarray):
    predictor.set_image(image)
    return predictor.predict(**PROMPT)


def _processor(model, mean: float = 0.5):
    """A processor for ``model``'s input side, with a normalisation of its own (so a test
    can tell whether it was the one used)."""
    from transformers import SamImageProcessor

    side = model.config.vision_config.image_size
    return SamImageProcessor(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        image_mean=(mean,) * 3,
        image_std=(0.25,) * 3,
    )


def _save(model, folder: Path, *, processor: str | None = "SamProcessor") -> Path:
    """``model`` written by ``save_pretrained``, with :func:`_processor` written by
    ``SamProcessor`` or ``SamImageProcessor`` (their files differ) unless None."""
    from transformers import SamProcessor

    model.save_pretrained(folder)
    if processor == "SamProcessor":
        SamProcessor(_processor(model)).save_pretrained(folder)
    elif processor == "SamImageProcessor":
        _processor(model).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("processor", ["SamProcessor", "SamImageProcessor", None])
@pytest.mark.parametrize("prefix", ["", "hf:"])
def test_a_saved_model_reloads_offline_with_identical_masks(
    tiny_sam, scene, tmp_path, empty_caches, prefix, processor
):
    folder = _save(tiny_sam, tmp_path / "tiny-sam", processor=processor)
    expected = _answer(SamPredictor(tiny_sam, _processor(tiny_sam) if processor else None), scene)
    loaded = load_sam(f"{prefix}{folder}")
    assert not loaded.model.training
    assert tuple(loaded.image_processor.image_mean) == ((0.5,) * 3 if processor else IMAGENET)
    result = _answer(loaded, scene)
    np.testing.assert_array_equal(result.masks, expected.masks)
    np.testing.assert_array_equal(result.scores, expected.scores)
    np.testing.assert_array_equal(result.logits, expected.logits)


def test_a_hub_name_loads_from_the_hugging_face_cache_offline(tiny_sam, scene, empty_caches):
    # The cache layout that `hf download facebook/sam-vit-base` leaves behind.
    repo = empty_caches / "hf" / "hub" / "models--facebook--sam-vit-base"
    commit = "0" * 40
    _save(tiny_sam, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    expected = _answer(SamPredictor(tiny_sam, _processor(tiny_sam)), scene)
    for spec in ("sam", "sam-vit-base", "hf:facebook/sam-vit-base"):
        result = _answer(load_sam(spec), scene)
        np.testing.assert_array_equal(result.masks, expected.masks)


@pytest.mark.parametrize("spec", ["sam", "sam-vit-huge", "hf:facebook/sam-vit-large"])
def test_an_uncached_hub_model_offline_names_the_repo_and_the_folder(empty_caches, spec):
    repo = SAM_CHECKPOINTS.get(spec) or spec.removeprefix("hf:")
    with pytest.raises(WeightsError) as caught:
        load_sam(spec)
    message = str(caught.value)
    cache = empty_caches / "hf" / "hub"
    assert repo in message and str(cache) in message
    assert f"models--{repo.replace('/', '--')}" in message


def test_a_folder_of_another_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "detr"}))
    with pytest.raises(WeightsError, match="model_type 'detr'") as caught:
        load_sam(tmp_path)
    assert caught.value.field == "model"


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("resnet18", ConfigError, "not a SAM model"),
        ("./no/such/folder", WeightsError, "no such folder"),
        ("hf:./no/such/folder", WeightsError, "no such folder"),
    ],
)
def test_specs_that_name_no_sam_are_refused(empty_caches, spec, error, words):
    with pytest.raises(error, match=words):
        load_sam(spec)


def test_an_unknown_device_is_refused(tiny_sam, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_sam(_save(tiny_sam, tmp_path / "m"), device="gpu0")
    assert caught.value.field == "device"


def test_is_sam_spec(tiny_sam, tmp_path):
    sam_folder = _save(tiny_sam, tmp_path / "sam", processor=None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
    for spec in (*SAM_CHECKPOINTS, "SAM", "hf:facebook/sam-vit-base",
                 "hf:Zigeng/SlimSAM-uniform-77", str(sam_folder), f"hf:{sam_folder}"):  # fmt: skip
        assert is_sam_spec(spec), spec
    for spec in ("resnet18", "yolo-n", "unet", "hf:facebook/detr-resnet-50",
                 "hf:facebook/sam2-hiera-large", "samples", str(other), f"hf:{other}",
                 str(tmp_path / "missing"), "hf:"):  # fmt: skip
        assert not is_sam_spec(spec), spec
