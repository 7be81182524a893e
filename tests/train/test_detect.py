"""The detection task: losses summed and logged by part; evaluation in original pixels.

An *oracle* detector returns each image's ground-truth boxes (found by the image's
content), so what is measured is the task's bookkeeping: mapping boxes back from the
resized, padded evaluation image to the image as read, areas, image ids, the confusion
matrix, and the thresholds restored afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from visionkit.data.datasets import collate_detection, load_dataset
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import detection_transforms
from visionkit.errors import DataError
from visionkit.metrics.detection import evaluate_coco
from visionkit.train.detect import EVAL_CONF, DetectionTask

IMAGE_SIDE = 96
EVAL_SIDE = 64  # smaller than the images: boxes must be mapped back to be right


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=4, val=12, imgsz=IMAGE_SIDE, workers=1
    )


@pytest.fixture(scope="module")
def val_set(shapes):
    return load_dataset(shapes, "detect", "val", transforms=detection_transforms(False, EVAL_SIDE))


def _loader(dataset) -> DataLoader:
    return DataLoader(dataset, batch_size=5, collate_fn=collate_detection)


def test_the_loss_is_the_sum_of_the_parts_and_each_part_is_logged(val_set, make_oracle):
    task = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE)
    model = make_oracle(val_set).train()
    total, logged = task.loss(model, next(iter(_loader(val_set))), torch.device("cpu"))
    assert total.item() == pytest.approx(2.5)
    assert logged == pytest.approx({"loss": 2.5, "loss_a": 2.0, "loss_b": 0.5})
    total.backward()
    assert model.weight.grad.item() == pytest.approx(2.5)


def test_perfect_detections_score_one_in_the_original_pixels(val_set, make_oracle):
    model = make_oracle(val_set)
    model.set_thresholds(conf=0.3, max_det=7)
    metrics = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE).evaluate(
        model, _loader(val_set), torch.device("cpu")
    )
    assert metrics["map"] == pytest.approx(1.0) and metrics["map_50"] == pytest.approx(1.0)
    assert model.seen_conf and set(model.seen_conf) == {EVAL_CONF}
    assert (model.thresholds.conf, model.thresholds.max_det) == (0.3, 7)  # restored
    matrix = torch.tensor(metrics["confusion_matrix"])
    objects = sum(len(t["labels"]) for _, t in val_set)
    assert matrix.trace().item() == objects and matrix.sum().item() == objects


def test_metrics_equal_coco_evaluation_of_the_same_boxes_in_original_pixels(
    shapes, val_set, make_oracle
):
    """A 1-pixel shift in the 64-px evaluation image is a 1.5-pixel shift in the 96-px
    original: mAP at the original scale, with the annotations' own areas, equals COCO
    evaluation of the shifted ground truth against the dataset file."""
    model = make_oracle(val_set, shift=1.0)
    metrics = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE).evaluate(
        model, _loader(val_set), torch.device("cpu")
    )
    doc = json.loads((shapes / "val.json").read_text())
    by_image: dict[int, list] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    shift = 1.0 * IMAGE_SIDE / EVAL_SIDE
    predictions = []
    for image_id, anns in by_image.items():
        for rank, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            x1, y1 = min(x + shift, IMAGE_SIDE), min(y + shift, IMAGE_SIDE)
            x2, y2 = min(x + w + shift, IMAGE_SIDE), min(y + h + shift, IMAGE_SIDE)
            score = torch.linspace(0.9, 0.5, len(anns))[rank].item()
            predictions.append({"image_id": image_id, "category_id": ann["category_id"],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})  # fmt: skip
    expected = evaluate_coco(doc, predictions)
    for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    assert 0.1 < metrics["map"] < 0.9  # the shift costs something at high IoU


def test_integer_images_are_refused_with_a_hint(val_set, make_oracle):
    task = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE)
    images, targets = next(iter(_loader(val_set)))
    with pytest.raises(DataError, match="detection_transforms"):
        task.loss(
            make_oracle(val_set).train(), ([(i * 255).byte() for i in images], targets), "cpu"
        )
