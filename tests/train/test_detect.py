"""The detection task: losses summed and logged by part; evaluation in original pixels.

An *oracle* detector returns each image's ground-truth boxes (found by the image's
content), so what is measured is the task's bookkeeping: mapping boxes (and instance
masks) back from the resized, padded evaluation image to the image as read, areas, image
ids, the confusion matrix, the mask metrics beside the box metrics, and the thresholds
restored afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from visionkit.data.datasets import collate_detection, load_dataset
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import detection_transforms, eval_scale
from visionkit.errors import DataError
from visionkit.metrics.detection import DetectionEvaluator, evaluate_coco
from visionkit.train.detect import (
    EVAL_CONF,
    SEGM_PREFIX,
    DetectionTask,
    masks_in_original,
    segm_metrics,
)

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


def _disk_and_bar(height: int, width: int, scale: tuple[float, float] = (1, 1)) -> torch.Tensor:
    """A disk and a thick diagonal bar of a ``height`` x ``width`` image, drawn at ``scale``
    ``(sy, sx)`` on a grid of that many pixels: ``bool [2, round(H sy), round(W sx)]``."""
    sy, sx = scale
    y = (torch.arange(round(height * sy)) + 0.5) / sy  # pixel centres in the image's units
    x = (torch.arange(round(width * sx)) + 0.5) / sx
    rows, cols = torch.meshgrid(y, x, indexing="ij")
    disk = (rows - height / 2) ** 2 + (cols - width / 3) ** 2 < (height / 3) ** 2
    bar = ((rows - cols * height / width).abs() < 6) & (cols > width / 2)
    return torch.stack([disk, bar])


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).sum((1, 2)) / (a | b).sum((1, 2))


def _centroids(masks: torch.Tensor) -> torch.Tensor:
    """``[N, 2]`` mean ``(y, x)`` of each mask's pixels."""
    rows, cols = torch.meshgrid(*(torch.arange(n) for n in masks.shape[1:]), indexing="ij")
    weights = masks.float() / masks.float().sum((1, 2), keepdim=True)
    return torch.stack([(weights * rows).sum((1, 2)), (weights * cols).sum((1, 2))], 1)


@pytest.mark.parametrize("size", [(60, 90), (90, 60), (64, 64)])
def test_masks_on_the_eval_image_map_back_to_the_image_as_read(size):
    """Probabilities drawn on the resized image (and 1 on its padding) come back in place at
    the image's size, the padding cut off; an image that was not resized comes back as it
    was."""
    height, width = size
    truth = _disk_and_bar(height, width)
    scale = eval_scale(height, width, EVAL_SIDE)
    drawn = _disk_and_bar(height, width, scale).float() * 0.8 + 0.1
    padded = torch.ones(2, 1, EVAL_SIDE, EVAL_SIDE)
    padded[:, 0, : drawn.shape[1], : drawn.shape[2]] = drawn
    found = masks_in_original(padded, size, EVAL_SIDE)
    assert found.dtype == torch.bool and found.shape == (2, height, width)
    assert _iou(found, truth).min() > 0.9
    assert (_centroids(found) - _centroids(truth)).abs().max() < 0.2
    if size == (EVAL_SIDE, EVAL_SIDE):
        assert torch.equal(found, truth)
    assert masks_in_original(padded[:0], size, EVAL_SIDE).shape == (0, height, width)


def test_binary_masks_of_the_eval_pipeline_come_back_as_far_as_it_kept_them():
    from torchvision import tv_tensors

    height, width = 60, 90
    truth = _disk_and_bar(height, width)
    image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[0.0, 0, width / 2, height / 2]] * 2), format="XYXY",
        canvas_size=(height, width),
    )  # fmt: skip
    target = {"boxes": boxes, "labels": torch.tensor([0, 1]), "masks": tv_tensors.Mask(truth)}
    _, on_eval = detection_transforms(False, EVAL_SIDE)(image, target)
    eval_masks = on_eval["masks"].as_subclass(torch.Tensor).to(torch.uint8)
    found = masks_in_original(eval_masks, (height, width), EVAL_SIDE)
    assert found.shape == (2, height, width) and _iou(found, truth).min() > 0.85


def test_a_mask_model_is_scored_on_its_masks_too_beside_the_box_metrics(val_set, make_oracle):
    """Masks of the evaluation image, mapped back like the ground truth's: a perfect score,
    under ``segm_`` keys; the fitness is still the box ``map``."""
    model = make_oracle(val_set, masks=True)
    task = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE, masks=True)
    metrics = task.evaluate(model, _loader(val_set), torch.device("cpu"))
    assert metrics["segm_map"] == pytest.approx(1.0) and metrics["map"] == pytest.approx(1.0)
    assert len(metrics["segm_map_per_class"]) == len(metrics["classes"])
    assert "segm_classes" not in metrics and "segm_confusion_matrix" not in metrics
    assert task.fitness_key == "map"
    boxes_only = DetectionTask(len(val_set.names), imgsz=EVAL_SIDE).evaluate(
        make_oracle(val_set), _loader(val_set), torch.device("cpu")
    )
    assert not any(key.startswith("segm_") for key in boxes_only)
    assert {k: v for k, v in metrics.items() if not k.startswith("segm_")} == boxes_only


def test_segm_metrics_are_the_segm_evaluation_under_a_prefix():
    evaluator = DetectionEvaluator(iou_type="segm")
    square = np.zeros((1, 8, 8), bool)
    square[0, 2:6, 2:6] = True
    evaluator.update(
        [{"boxes": [[2, 2, 6, 6]], "scores": [0.9], "labels": [3], "masks": square}],
        [{"boxes": [[2, 2, 6, 6]], "labels": [3], "masks": square}],
    )
    plain = evaluator.compute()
    prefixed = segm_metrics(plain)
    assert prefixed == {f"{SEGM_PREFIX}{k}": v for k, v in plain.items() if k != "classes"}
    assert prefixed["segm_map"] == pytest.approx(1.0) and "segm_map_50" in prefixed
