"""``ClassificationResult``: the top classes, JSON, and the picture it draws and saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.api import ClassificationResult

NAMES = ("ant", "bee", "cat", "dog", "eel", "fox")
PROBS = np.array([0.10, 0.40, 0.05, 0.25, 0.0, 0.20], np.float32)


def _result(probs=PROBS, names=NAMES, path=None, image=None) -> ClassificationResult:
    image = np.full((120, 160, 3), 90, np.uint8) if image is None else image
    return ClassificationResult(np.asarray(probs, np.float32), tuple(names), path, image)


def test_top_classes():
    result = _result()
    assert result.top1 == 1 and result.name == "bee"
    assert result.top1conf == pytest.approx(0.40)
    assert result.top5 == [1, 3, 5, 0, 2]


def test_top5_keeps_class_order_among_ties_and_stops_at_the_class_count():
    assert _result([0.25, 0.25, 0.5], NAMES[:3]).top5 == [2, 0, 1]
    many = np.full(40, 0.8 / 38, np.float32)  # enough classes that an unstable sort shows
    many[[30, 7]] = [0.15, 0.05]
    assert _result(many, [f"c{i}" for i in range(40)]).top5 == [30, 7, 0, 1, 2]
    assert _result([0.3, 0.7], NAMES[:2]).top5 == [1, 0]


def test_to_json_round_trips_through_json(tmp_path):
    path = tmp_path / "bee.png"
    data = json.loads(json.dumps(_result(path=path).to_json()))
    assert data["file"] == str(path)
    assert (data["class"], data["name"]) == (1, "bee")
    assert data["confidence"] == pytest.approx(0.40)
    assert list(data["probs"]) == list(NAMES)
    assert list(data["probs"].values()) == pytest.approx(PROBS.tolist())


def test_to_json_of_an_array_has_no_file():
    assert _result().to_json()["file"] is None


def test_plot_writes_the_top5_in_the_corner_and_leaves_the_rest():
    image = np.full((120, 160, 3), 90, np.uint8)
    result = _result(image=image)
    picture = result.plot()
    assert picture.dtype == np.uint8 and picture.shape == image.shape
    corner = picture[:60, :60]
    assert corner.max() > 200 and (corner == 0).any()  # white text on a black box
    np.testing.assert_array_equal(picture[80:, 100:], image[80:, 100:])
    np.testing.assert_array_equal(result.image, image)  # the result's image is untouched


def test_plot_lists_five_lines_for_six_classes():
    """The text box is as tall as five lines (it grows with the count, up to five)."""

    def box_height(count: int) -> int:
        picture = _result(PROBS[:count] / PROBS[:count].sum(), NAMES[:count]).plot()
        rows = np.flatnonzero((picture != 90).any(axis=(1, 2)))
        return int(rows.max() - rows.min() + 1)

    one_line = box_height(1)
    assert box_height(2) > one_line
    assert box_height(6) == box_height(5) > box_height(4)


def test_plot_of_a_tiny_image_keeps_its_size():
    picture = _result(image=np.zeros((8, 8, 3), np.uint8)).plot()
    assert picture.shape == (8, 8, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_writes_the_plot(suffix, tmp_path):
    result = _result()
    path = result.save(tmp_path / "nested" / f"bee{suffix}")
    assert path == tmp_path / "nested" / f"bee{suffix}"
    with Image.open(path) as saved:
        assert saved.format == {".png": "PNG", ".jpg": "JPEG"}[suffix]
        pixels = np.asarray(saved.convert("RGB"))
    if suffix == ".png":
        np.testing.assert_array_equal(pixels, result.plot())
    else:
        assert pixels.shape == result.image.shape


def test_save_returns_a_path_for_a_str(tmp_path):
    assert isinstance(_result().save(str(tmp_path / "x.png")), Path)
