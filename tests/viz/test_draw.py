"""Drawing detections and semantic masks: colours land where they should, inputs stay intact."""

from __future__ import annotations

import numpy as np
import pytest

from visionkit.errors import ConfigError
from visionkit.viz import color_for, draw_detections, draw_semantic
from visionkit.viz.draw import MASK_ALPHA, _tag_text

H, W = 80, 96
GRAY = 100
BOX = (20, 30, 60, 70)  # x1, y1, x2, y2: room above for the tag


@pytest.fixture
def image() -> np.ndarray:
    return np.full((H, W, 3), GRAY, dtype=np.uint8)


def _edge_pixels(out: np.ndarray, box=BOX) -> list[tuple[int, ...]]:
    """Pixels in the middle of the bottom, left and right edges (the tag covers the top)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    return [tuple(out[y2, cx]), tuple(out[cy, x1]), tuple(out[cy, x2])]


def test_box_outline_takes_the_class_colour(image):
    out = draw_detections(image, [BOX], [3], line_width=2)
    assert _edge_pixels(out) == [color_for(3)] * 3
    assert tuple(out[BOX[1] + 10, BOX[0] + 10]) == (GRAY,) * 3  # inside the box: untouched
    assert tuple(out[BOX[1] - 3, BOX[0] + 1]) == color_for(3)  # the tag above the box


def test_track_ids_pick_the_colour(image):
    out = draw_detections(image, [BOX], [3], track_ids=[7], line_width=2)
    assert _edge_pixels(out) == [color_for(7)] * 3


def test_masks_tint_their_pixels_only(image):
    masks = np.zeros((1, H, W), dtype=bool)
    masks[0, 40:50, 30:40] = True
    out = draw_detections(image, [BOX], [2], masks=masks, line_width=2)
    expected = np.rint((1 - MASK_ALPHA) * GRAY + MASK_ALPHA * np.array(color_for(2)))
    assert (out[40:50, 30:40] == expected).all()
    assert (out[52:60, 42:55] == GRAY).all()  # inside the box, outside the mask
    assert (out[:, 70:] == GRAY).all()  # right of every drawing


def test_torch_tensors_draw_like_numpy(image):
    torch = pytest.importorskip("torch")
    masks = np.zeros((2, H, W), dtype=np.float32)
    masks[1, 5:15, 70:90] = 0.9
    boxes = np.array([BOX, (65, 2, 95, 20)], dtype=np.float32)
    args = dict(scores=[0.9, 0.4], track_ids=[1, 2], line_width=2)
    expected = draw_detections(image, boxes, [0, 1], masks=masks, **args)
    got = draw_detections(
        image, torch.from_numpy(boxes), torch.tensor([0, 1]), masks=torch.from_numpy(masks), **args
    )
    assert (got == expected).all()


def test_empty_detections_give_an_equal_copy(image):
    out = draw_detections(image, np.zeros((0, 4)), [], masks=np.zeros((0, H, W), bool))
    assert out is not image and (out == image).all()


def test_input_is_not_modified(image):
    before = image.copy()
    draw_detections(image, [BOX], [1], masks=np.ones((1, H, W), bool), scores=[0.5])
    draw_semantic(image, np.ones((H, W), np.uint8))
    assert (image == before).all()


def test_boxes_outside_the_image(image):
    out = draw_detections(image, [(-20, -20, 40, 50), (1e12, 5, 2e12, 9)], [1, 2], line_width=2)
    assert tuple(out[49, 20]) == color_for(1)  # the visible bottom edge
    assert not (out == np.array(color_for(2))).all(axis=2).any()  # wholly outside: nothing
    reversed_box = draw_detections(image, [(60, 70, 20, 30)], [3], line_width=2)
    assert _edge_pixels(reversed_box) == [color_for(3)] * 3
    nan_box = draw_detections(image, [(np.nan, 0, 10, 10)], [3])
    assert (nan_box == image).all()


def test_tag_text():
    scores, tracks = np.array([0.871]), np.array([12])
    assert _tag_text(1, ["bg", "circle"], scores, None, 0) == "circle 0.87"
    assert _tag_text(1, {1: "circle"}, None, tracks, 0) == "#12 circle"
    assert _tag_text(5, ["bg"], None, None, 0) == "5"


def test_mismatched_lengths_are_refused(image):
    with pytest.raises(ConfigError, match="labels"):
        draw_detections(image, [BOX, BOX], [1])
    with pytest.raises(ConfigError, match="masks"):
        draw_detections(image, [BOX], [1], masks=np.zeros((1, H, W + 1), bool))
    with pytest.raises(ConfigError, match="uint8"):
        draw_detections(image.astype(np.float32), [BOX], [1])


def test_semantic_overlay_tints_classes_but_not_background_or_ignore(image):
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[:10] = 4
    mask[10:20] = 255
    out = draw_semantic(image, mask, alpha=0.5)
    expected = np.rint(0.5 * GRAY + 0.5 * np.array(color_for(4)))
    assert (out[:10] == expected).all()
    assert (out[10:] == GRAY).all()
    assert (draw_semantic(image, mask, background=None)[20:] != GRAY).any()
    with pytest.raises(ConfigError, match="mask"):
        draw_semantic(image, mask[:5])
