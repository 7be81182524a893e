"""SamAutomaticMaskGenerator: stability score, thresholds, NMS, clean-up, and transformers'
mask-generation pipeline as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.errors import ConfigError
from visionkit.models.foundation import SamAutomaticMaskGenerator, SamPredictor, stability_score

SIZE = 20  # side of the scripted predictor's square image
INSIDE, OUTSIDE = 10.0, -10.0  # logits of a crisp mask (stability score 1)


def _square(x0: int, y0: int, x1: int, y1: int, inside: float = INSIDE) -> torch.Tensor:
    logits = torch.full((SIZE, SIZE), OUTSIDE)
    logits[y0:y1, x0:x1] = inside
    return logits


EMPTY = torch.full((SIZE, SIZE), OUTSIDE)


class ScriptedPredictor:
    """Stands in for a SamPredictor: answers the grid's points, in order, with the given
    ``(three logit masks, three scores)``, whatever the image."""

    def __init__(self, answers: list[tuple[list[torch.Tensor], list[float]]]) -> None:
        self.answers = answers
        self.original_size = (0, 0)
        self.asked: list[list[float]] = []

    def set_image(self, image: np.ndarray) -> None:
        self.original_size = image.shape[:2]

    def predict_torch(self, points, labels, multimask=True):
        assert multimask and labels.tolist() == [[1]] * len(points)
        start = len(self.asked)
        self.asked += points[:, 0].tolist()
        batch = self.answers[start : start + len(points)]
        logits = torch.stack([torch.stack(masks) for masks, _ in batch])
        return logits, torch.tensor([scores for _, scores in batch]), logits


def _generate(answers, **options):
    predictor = ScriptedPredictor(answers)
    generator = SamAutomaticMaskGenerator(predictor, points_per_side=2, **options)
    return generator.generate(np.zeros((SIZE, SIZE, 3), np.uint8)), predictor


def test_stability_score_by_hand():
    logits = torch.tensor([[[-2.0, -0.5, 0.5, 1.5, 3.0]], [[-3.0, -2.0, -1.5, -1.2, -1.0]]])
    # above +1: {1.5, 3} (2 pixels); above -1: {-0.5, 0.5, 1.5, 3} (4 pixels) -> 2 / 4.
    # The second mask is empty even at -1: its score is 0, not NaN.
    assert stability_score(logits).tolist() == [0.5, 0.0]
    # above 0.75: {1.5, 3}; above 0.25: {0.5, 1.5, 3} -> 2 / 3.
    assert stability_score(logits[:1], threshold=0.5, offset=0.25).item() == pytest.approx(2 / 3)


def test_stability_score_is_transformers_one():
    from transformers.models.sam.image_processing_sam import _compute_stability_score

    logits = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2
    expected = _compute_stability_score(logits, 0.0, 1.0)
    torch.testing.assert_close(stability_score(logits), expected.float())


def test_box_nms_removes_a_duplicated_mask():
    a, b = _square(2, 2, 9, 9), _square(11, 10, 18, 19)
    answers = [  # grid points, row by row: (5, 5), (15, 5), (5, 15), (15, 15)
        ([a, EMPTY, EMPTY], [0.95, 0.99, 0.99]),
        ([a.clone(), EMPTY, EMPTY], [0.90, 0.99, 0.99]),
        ([b, EMPTY, EMPTY], [0.92, 0.99, 0.99]),
        ([b.clone(), EMPTY, EMPTY], [0.93, 0.99, 0.99]),
    ]
    records, predictor = _generate(answers, points_per_batch=3)
    assert predictor.asked == [[5, 5], [15, 5], [5, 15], [15, 15]]
    # One record per object, from its best-scored copy, the larger object (b) first.
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.93, 0.95])
    assert [r["point_coords"] for r in records] == [[[15.0, 15.0]], [[5.0, 5.0]]]
    assert [r["bbox"] for r in records] == [[11, 10, 18, 19], [2, 2, 9, 9]]
    assert [r["area"] for r in records] == [63, 49]
    kept, _ = _generate(answers, box_nms_thresh=1.0)
    assert len(kept) == 4  # without NMS both copies of each stay


def test_masks_are_sorted_by_area_and_described_by_their_records():
    big, small = _square(1, 1, 19, 12), _square(3, 14, 6, 17)
    answers = [([small, EMPTY, EMPTY], [0.99] * 3), ([big, EMPTY, EMPTY], [0.9] * 3)]
    answers += [([EMPTY] * 3, [0.99] * 3)] * 2
    records, _ = _generate(answers)
    assert [r["area"] for r in records] == [18 * 11, 9]
    for record, logits in zip(records, (big, small), strict=True):
        assert record["segmentation"].dtype == bool
        np.testing.assert_array_equal(record["segmentation"], (logits > 0).numpy())
        assert record["stability_score"] == 1.0
        assert set(record) == {"segmentation", "area", "bbox", "predicted_iou",
                               "stability_score", "point_coords"}  # fmt: skip


def test_low_predicted_iou_and_unstable_masks_are_dropped():
    crisp, blurry = _square(2, 2, 9, 9), _square(11, 10, 18, 19, inside=0.5)
    answers = [
        ([crisp, EMPTY, EMPTY], [0.95, 0.99, 0.99]),
        ([crisp.clone(), EMPTY, EMPTY], [0.80, 0.99, 0.99]),  # under pred_iou_thresh
        ([blurry, EMPTY, EMPTY], [0.99, 0.99, 0.99]),  # inside at 0, gone at +1: stability 0
        ([EMPTY] * 3, [0.99] * 3),
    ]
    records, _ = _generate(answers, box_nms_thresh=1.0)
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.95])
    loose, _ = _generate(answers, box_nms_thresh=1.0, pred_iou_thresh=0.0,
                         stability_score_thresh=0.0)  # fmt: skip
    assert sorted(r["predicted_iou"] for r in loose) == pytest.approx([0.80, 0.95, 0.99])


def test_small_holes_and_islands_are_cleaned_away():
    logits = _square(2, 2, 12, 12)
    logits[6, 6] = OUTSIDE  # a one-pixel hole
    logits[16:18, 16] = INSIDE  # a two-pixel island, apart from the square
    answers = [([logits, EMPTY, EMPTY], [0.95, 0.99, 0.99])] + [([EMPTY] * 3, [0.99] * 3)] * 3
    kept, _ = _generate(answers)
    assert kept[0]["area"] == 99 + 2 and kept[0]["bbox"] == [2, 2, 17, 18]
    cleaned, _ = _generate(answers, min_mask_region_area=5)
    np.testing.assert_array_equal(cleaned[0]["segmentation"], (_square(2, 2, 12, 12) > 0).numpy())
    assert cleaned[0]["area"] == 100 and cleaned[0]["bbox"] == [2, 2, 12, 12]


def test_cleaning_keeps_the_largest_island_of_a_mask_made_of_small_ones():
    logits = _square(2, 2, 4, 4)
    logits[10:13, 10:13] = INSIDE  # 4 and 9 pixels, both under the area
    answers = [([logits, EMPTY, EMPTY], [0.95, 0.99, 0.99])] + [([EMPTY] * 3, [0.99] * 3)] * 3
    cleaned, _ = _generate(answers, min_mask_region_area=20)
    assert cleaned[0]["area"] == 9 and cleaned[0]["bbox"] == [10, 10, 13, 13]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("points_per_side", 0),
        ("points_per_batch", 2.5),
        ("pred_iou_thresh", 1.5),
        ("stability_score_thresh", -0.1),
        ("box_nms_thresh", 2),
        ("min_mask_region_area", -1),
    ],
)
def test_bad_options_are_refused(option, value):
    with pytest.raises(ConfigError) as caught:
        SamAutomaticMaskGenerator(ScriptedPredictor([]), **{option: value})
    assert caught.value.field == option


@pytest.mark.parametrize("stability", [0.0, 0.5])
def test_masks_are_those_of_transformers_mask_generation_pipeline(tiny_sam, scene, stability):
    from transformers import pipeline

    predictor = SamPredictor(tiny_sam)
    options = {"pred_iou_thresh": 0.0, "stability_score_thresh": stability}
    records = SamAutomaticMaskGenerator(predictor, points_per_side=8, **options).generate(scene)
    reference = pipeline(
        "mask-generation", model=tiny_sam, image_processor=predictor.image_processor
    )(Image.fromarray(scene), points_per_crop=8, crops_nms_thresh=0.7, **options)
    # transformers keeps empty masks (their [0, 0, 0, 0] boxes never overlap); we drop them.
    expected = [(m.numpy(), s) for m, s in zip(*reference.values(), strict=True) if m.any()]
    expected.sort(key=lambda pair: -pair[0].sum())
    assert len(records) == len(expected) >= 1 + (stability == 0)
    for record, (mask, score) in zip(records, expected, strict=True):
        np.testing.assert_array_equal(record["segmentation"], mask)
        assert record["predicted_iou"] == pytest.approx(float(score), abs=1e-5)
        rows, cols = np.nonzero(mask)
        assert record["bbox"] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert record["area"] == mask.sum()
        x, y = record["point_coords"][0]
        assert 0 < x < scene.shape[1] and 0 < y < scene.shape[0]
