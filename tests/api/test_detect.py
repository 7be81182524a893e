"""Detection behind the API, measured with an oracle detector (see ``tests/conftest.py``):
validation in original pixels equals COCO evaluation of its own ``predictions.json``
against the dataset file; plots are written; ``predict`` maps boxes back to the image as
read, for files, arrays, folders and videos; a class mismatch is one clear error."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from visionkit.api import _detect
from visionkit.api._results import DetectionResult
from visionkit.data.datasets import load_dataset
from visionkit.data.images import read_image
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import detection_transforms
from visionkit.errors import ConfigError
from visionkit.metrics.detection import evaluate_coco

IMAGE_SIDE = 80
EVAL_SIDE = 64


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=2, val=10, imgsz=IMAGE_SIDE, workers=1
    )


@pytest.fixture
def oracle(shapes, make_oracle):
    dataset = load_dataset(
        shapes, "detect", "val", transforms=detection_transforms(False, EVAL_SIDE)
    )
    model = make_oracle(dataset, shift=0.5)
    model.config = type(model.config)(**{**model.config.to_dict(), "names": dataset.names})
    return model


def test_validation_equals_coco_evaluation_of_its_predictions_file(shapes, oracle, tmp_path):
    metrics = _detect.validate(
        oracle, data=shapes, split="val", batch=4, device="cpu", project=tmp_path,
        save_dir=tmp_path / "run",
    )  # fmt: skip
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    expected = evaluate_coco(shapes / "val.json", predictions)
    for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
        assert metrics[key] == expected[key], key  # to the last digit
    assert 0.3 < metrics["map"] < 1.0
    for plot in ("pr_curve.png", "confusion_matrix.png", "val_predictions.png"):
        assert (tmp_path / "run" / plot).stat().st_size > 1000
    assert oracle.thresholds.conf == 0.001  # the defaults it had before, restored


def _truth_in_pixels(shapes, index: int) -> np.ndarray:
    doc = json.loads((shapes / "val.json").read_text())
    image_id = doc["images"][index]["id"]
    boxes = [a["bbox"] for a in doc["annotations"] if a["image_id"] == image_id]
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def test_predict_maps_boxes_back_to_each_image_as_read(shapes, oracle):
    path = sorted((shapes / "images" / "val").glob("*.png"))[0]
    from_file, from_array = _detect.predict(
        oracle, [path, read_image(path)], batch=2, device="cpu", conf=0.25, iou=None, max_det=300
    )
    truth = _truth_in_pixels(shapes, 0)
    scale = IMAGE_SIDE / EVAL_SIDE
    for result in (from_file, from_array):
        assert isinstance(result, DetectionResult) and len(result) == len(truth)
        np.testing.assert_allclose(result.boxes.xyxy.numpy(), truth + 0.5 * scale, atol=1e-3)
        assert result.image.shape == (IMAGE_SIDE, IMAGE_SIDE, 3)
    assert from_file.path == path and from_array.path is None
    record = from_file.to_json()[0]
    assert set(record) == {"box", "class", "name", "confidence"}
    assert record["name"] == oracle.config.names[record["class"]]
    assert from_file.plot().shape == from_file.image.shape
    kept = _detect.predict(oracle, path, batch=1, device="cpu", conf=0.7, iou=None, max_det=300)
    assert len(kept[0]) == int((torch.linspace(0.9, 0.5, len(truth)) >= 0.7).sum())


def test_predict_reads_videos_frame_by_frame(shapes, oracle, tmp_path):
    """A lossless video of two validation images: both frames, in order, each with the
    detections of its image."""
    paths = sorted((shapes / "images" / "val").glob("*.png"))[:2]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 2, (80, 80))
    assert writer.isOpened()
    for path in paths:
        writer.write(cv2.cvtColor(read_image(path), cv2.COLOR_RGB2BGR))
    writer.release()
    results = _detect.predict(
        oracle, video, batch=4, device="cpu", conf=0.25, iou=None, max_det=300
    )
    assert [r.frame for r in results] == [0, 1] and all(r.path == video for r in results)
    for index, result in enumerate(results):
        assert len(result) == len(_truth_in_pixels(shapes, index))


def test_a_dataset_with_other_classes_is_refused_naming_it(shapes, oracle, tmp_path):
    other = export_synthetic(tmp_path / "other", train=1, val=2, imgsz=IMAGE_SIDE, workers=1)
    oracle.config = type(oracle.config)(
        **{**oracle.config.to_dict(), "num_classes": 2, "names": ["a", "b"]}
    )
    with pytest.raises(ConfigError) as error:
        _detect.validate(oracle, data=other, split="val", batch=2, device="cpu", project=tmp_path)
    assert "6 classes" in str(error.value) and str(other) in str(error.value)
