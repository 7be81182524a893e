"""SamPredictor: every prompt kind, the cached embedding, and transformers' own pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.errors import ConfigError
from visionkit.models.foundation import PromptMasks, SamPredictor, mask_boxes

HEIGHT, WIDTH = 90, 130
LOW_RES = 32  # 4 x the tiny model's 8 x 8 embedding

PROMPTS = {
    "points": {"points": [(50, 40), (10, 80)], "point_labels": [1, 0]},
    "box": {"box": (30, 20, 90, 60)},
    "points+box": {"points": [(50, 40)], "box": (30, 20, 90, 60)},
}


def _transformers_pipeline(model, processor, image, prompt, multimask, input_masks=None):
    """Masks, scores and low-res logits the way transformers' documentation runs SAM:
    ``SamProcessor`` -> ``SamModel`` -> ``post_process_masks``."""
    inputs = {}
    if "points" in prompt:
        inputs["input_points"] = [[list(map(float, p)) for p in prompt["points"]]]
        inputs["input_labels"] = [prompt.get("point_labels", [1] * len(prompt["points"]))]
    if "box" in prompt:
        inputs["input_boxes"] = [[list(map(float, prompt["box"]))]]
    encoded = processor(images=image, return_tensors="pt", **inputs)
    with torch.no_grad():
        out = model(**encoded, multimask_output=multimask, input_masks=input_masks)
    masks = processor.post_process_masks(
        out.pred_masks, encoded["original_sizes"], encoded["reshaped_input_sizes"]
    )[0][0]
    return masks.numpy(), out.iou_scores[0, 0].numpy(), out.pred_masks[0, 0].numpy()


@pytest.fixture
def predictor(tiny_sam, scene) -> SamPredictor:
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(scene)
    return predictor


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind", [*PROMPTS, "mask_input"])
def test_every_prompt_kind_gives_masks_at_the_image_size(predictor, kind, multimask):
    if kind == "mask_input":
        previous = predictor.predict(points=[(50, 40)])
        prompt = {"mask_input": previous.logits[previous.best]}
    else:
        prompt = PROMPTS[kind]
    result = predictor.predict(**prompt, multimask=multimask)
    k = 3 if multimask else 1
    assert isinstance(result, PromptMasks) and len(result) == k
    assert result.masks.dtype == bool and result.masks.shape == (k, HEIGHT, WIDTH)
    assert result.scores.dtype == np.float32 and result.scores.shape == (k,)
    assert result.logits.shape == (k, LOW_RES, LOW_RES)
    assert result.masks.any() and not result.masks.all()


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind", list(PROMPTS))
def test_masks_and_scores_are_those_of_transformers_sam_processor(
    tiny_sam, scene, predictor, kind, multimask
):
    from transformers import SamProcessor

    processor = SamProcessor(predictor.image_processor)
    masks, scores, logits = _transformers_pipeline(
        tiny_sam, processor, scene, PROMPTS[kind], multimask
    )
    result = predictor.predict(**PROMPTS[kind], multimask=multimask)
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_array_equal(result.scores, scores)
    np.testing.assert_array_equal(result.logits, logits)


def test_mask_input_refines_as_transformers_does(tiny_sam, scene, predictor):
    from transformers import SamProcessor

    prompt = {"points": [(50, 40)]}
    first = predictor.predict(**prompt)
    previous = first.logits[first.best]
    refined = predictor.predict(**prompt, mask_input=previous)
    masks, scores, _ = _transformers_pipeline(
        tiny_sam,
        SamProcessor(predictor.image_processor),
        scene,
        prompt,
        True,
        input_masks=torch.from_numpy(previous)[None, None],
    )
    np.testing.assert_array_equal(refined.masks, masks)
    np.testing.assert_array_equal(refined.scores, scores)
    assert not np.array_equal(refined.masks, first.masks)  # the mask prompt was used


def test_the_image_is_encoded_once_for_every_prompt(tiny_sam, scene):
    calls = []
    hook = tiny_sam.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        predictor = SamPredictor(tiny_sam)
        predictor.set_image(scene)
        first = predictor.predict(points=[(50, 40)])
        second = predictor.predict(box=(30, 20, 90, 60))
        assert len(calls) == 1
        assert not np.array_equal(first.masks, second.masks)
        predictor.set_image(scene[:, ::-1].copy())
        assert len(calls) == 2
    finally:
        hook.remove()


def test_pil_images_and_files_give_the_array_answer(tiny_sam, scene, tmp_path):
    predictor = SamPredictor(tiny_sam)
    answers = []
    path = tmp_path / "scene.png"
    Image.fromarray(scene).save(path)
    for image in (scene, Image.fromarray(scene), path, str(path)):
        predictor.set_image(image)
        answers.append(predictor.predict(points=[(50, 40)]).masks)
    for answer in answers[1:]:
        np.testing.assert_array_equal(answer, answers[0])


def test_gray_images_are_repeated_to_rgb(tiny_sam, scene):
    predictor = SamPredictor(tiny_sam)
    gray = scene[:, :, 0]
    predictor.set_image(gray)
    from_gray = predictor.predict(points=[(50, 40)])
    predictor.set_image(np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(from_gray.masks, predictor.predict(points=[(50, 40)]).masks)


@pytest.mark.parametrize(
    ("prompt", "field", "words"),
    [
        ({"points": [(131, 40)]}, "points", "outside the 130x90"),
        ({"points": [(-1, 40)]}, "points", "outside"),
        ({"points": [(50, 91)]}, "points", "outside"),
        ({"points": [(50, float("nan"))]}, "points", "NaN"),
        ({"points": [1, 2, 3]}, "points", "[N, 2]"),
        ({"points": np.zeros((0, 2))}, "points", "N >= 1"),
        ({"points": [(50, 40)], "point_labels": [1, 0]}, "point_labels", "1 labels"),
        ({"points": [(50, 40)], "point_labels": [2]}, "point_labels", "background"),
        ({"point_labels": [1]}, "point_labels", "without points"),
        ({"box": (30, 20, 140, 60)}, "box", "outside"),
        ({"box": (90, 20, 30, 60)}, "box", "x0 < x1"),
        ({"box": (30, 20, 30, 60)}, "box", "x0 < x1"),
        ({"box": (30, 60, 90, 20)}, "box", "y0 < y1"),
        ({"box": (30, 20, 90)}, "box", "(x0, y0, x1, y1)"),
        ({"mask_input": np.zeros((64, 64))}, "mask_input", f"[{LOW_RES}, {LOW_RES}]"),
        ({}, "points", "no prompt"),
    ],
)
def test_bad_prompts_name_their_field(predictor, prompt, field, words):
    with pytest.raises(ConfigError, match="field") as caught:
        predictor.predict(**prompt)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_prompts_on_the_border_are_inside(predictor):
    result = predictor.predict(points=[(0, 0), (WIDTH, HEIGHT)], box=(0, 0, WIDTH, HEIGHT))
    assert result.masks.shape == (3, HEIGHT, WIDTH)


def test_predict_before_set_image_is_refused(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    with pytest.raises(ConfigError, match="set_image") as caught:
        predictor.predict(points=[(1, 1)])
    assert caught.value.field == "image"


def test_reset_image_drops_the_embedding(predictor):
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(ConfigError, match="set_image"):
        predictor.predict(points=[(1, 1)])


@pytest.mark.parametrize(
    "image", [np.zeros((9, 13, 3), np.float32), np.zeros((9, 13, 4), np.uint8), [[1, 2]]]
)
def test_images_that_are_not_rgb_are_refused(tiny_sam, image):
    with pytest.raises(ConfigError) as caught:
        SamPredictor(tiny_sam).set_image(image)
    assert caught.value.field == "image"


def test_a_processor_for_another_input_size_is_refused(tiny_sam):
    from transformers import SamImageProcessor, SamProcessor

    with pytest.raises(ConfigError, match="64") as caught:
        SamPredictor(tiny_sam, SamProcessor(SamImageProcessor()))  # SAM's 1024 pixels
    assert caught.value.field == "processor"


def test_mask_boxes_edges_and_inclusive():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 2, 3] = True
    masks[0, 1:4, 1] = True
    assert mask_boxes(masks).tolist() == [[1, 1, 4, 4], [0, 0, 0, 0]]
    assert mask_boxes(masks, inclusive=True).tolist() == [[1, 1, 3, 3], [0, 0, 0, 0]]
    assert mask_boxes(masks[:0]).shape == (0, 4)


def test_prompt_masks_best_and_boxes(predictor):
    result = predictor.predict(box=(30, 20, 90, 60))
    assert result.best == int(np.argmax(result.scores))
    for mask, box in zip(result.masks, result.boxes, strict=True):
        rows, cols = np.nonzero(mask)
        assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
