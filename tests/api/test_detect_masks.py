"""Instance segmentation behind the API: a Mask R-CNN trained, validated and predicting.

An oracle that answers each validation image with its own masks pins the geometry down
(masks back in the pixels of the image as read, COCO RLEs in ``predictions.json``, metrics
equal to pycocotools'). ``maskrcnn-small`` trained through ``Model.train`` for about a
minute of one CPU core shows the loop: box and mask metrics every epoch, final numbers
equal to pycocotools' ``COCOeval`` on its own ``predictions.json``, and masks that fit the
shapes far better than its boxes filled in, or than masks of other images.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionkit
from visionkit.api import _detect
from visionkit.data.datasets import load_dataset
from visionkit.data.synthetic.export import export_synthetic
from visionkit.data.transforms import detection_transforms
from visionkit.errors import DataError
from visionkit.metrics.detection import evaluate_coco
from visionkit.ops.masks import rle_to_mask, segmentation_to_mask

IMAGE_SIDE = 80
EVAL_SIDE = 64  # smaller than the images: masks must be mapped back to be right
STATS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]
STATS += ["mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return export_synthetic(
        tmp_path_factory.mktemp("shapes"), train=2, val=6, imgsz=IMAGE_SIDE, workers=1
    )


@pytest.fixture
def oracle(shapes, make_oracle):
    dataset = load_dataset(
        shapes, "detect", "val", transforms=detection_transforms(False, EVAL_SIDE)
    )
    model = make_oracle(dataset, masks=True)
    model.config = type(model.config)(**{**model.config.to_dict(), "names": dataset.names})
    return model


def _cocoeval(gt: Path, predictions: list[dict], iou_type: str) -> dict[str, float]:
    """pycocotools' twelve summary numbers under our key names."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints as it goes
        truth = COCO(str(gt))
        evaluation = COCOeval(truth, truth.loadRes(predictions), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(zip(STATS, evaluation.stats.tolist(), strict=True))


def _assert_equals_cocoeval(metrics: dict, gt: Path, predictions: list[dict]) -> None:
    for iou_type, prefix in (("bbox", ""), ("segm", "segm_")):
        expected = _cocoeval(gt, predictions, iou_type)
        for key in STATS:
            assert metrics[prefix + key] == pytest.approx(expected[key], abs=1e-9), prefix + key


def _truth_masks(shapes: Path, index: int) -> np.ndarray:
    """``bool [M, H, W]``: the masks of val image ``index`` as the dataset file holds them."""
    doc = json.loads((shapes / "val.json").read_text())
    image = doc["images"][index]
    anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    size = image["height"], image["width"]
    return np.stack([segmentation_to_mask(a["segmentation"], *size) for a in anns])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a & b).sum((1, 2)) / (a | b).sum((1, 2))


def test_validation_scores_masks_in_original_pixels_as_pycocotools_does(shapes, oracle, tmp_path):
    metrics = _detect.validate(
        oracle, data=shapes, split="val", batch=4, device="cpu", project=tmp_path,
        save_dir=tmp_path / "run",
    )  # fmt: skip
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert predictions and all(p["segmentation"]["size"] == [80, 80] for p in predictions)
    _assert_equals_cocoeval(metrics, shapes / "val.json", predictions)
    assert metrics["map"] == pytest.approx(1.0) and metrics["segm_map_50"] == pytest.approx(1.0)
    assert 0.5 < metrics["segm_map"] < 1.0  # small shapes lose pixels to the 64-px detour
    saved = json.loads((tmp_path / "run" / "val_metrics.json").read_text())
    assert saved["segm_map"] == metrics["segm_map"] and "segm_map_50" in saved
    assert (tmp_path / "run" / "val_predictions.png").stat().st_size > 1000


def test_predict_gives_each_objects_mask_in_the_image_as_read(shapes, oracle):
    paths = sorted((shapes / "images" / "val").glob("*.png"))[:2]
    results = _detect.predict(oracle, paths, batch=2, device="cpu", conf=0.25, max_det=300)
    ious = []
    for index, result in enumerate(results):
        truth = _truth_masks(shapes, index)
        assert result.masks.dtype == torch.bool and result.masks.shape == truth.shape
        ious += _iou(result.masks.numpy(), truth).tolist()
        records = result.to_json()
        for record, mask in zip(records, result.masks.numpy(), strict=True):
            assert np.array_equal(rle_to_mask(record["segmentation"]), mask)
        drawn = result.plot()
        changed = (drawn != result.image).any(-1)
        assert changed[truth.any(0)].mean() > 0.9  # the masks are tinted
    # The oracle's masks went through the 64-px pipeline, which small shapes survive worst.
    assert min(ious) > 0.5 and np.mean(ious) > 0.75


def _without_segmentations(shapes: Path, out: Path, keep: int = 0) -> Path:
    """A copy of the dataset whose training objects lose their segmentation, but the first
    ``keep`` of them."""
    copy = shutil.copytree(shapes, out)
    doc = json.loads((copy / "train.json").read_text())
    for ann in doc["annotations"][keep:]:
        del ann["segmentation"]
    (copy / "train.json").write_text(json.dumps(doc))
    return copy


@pytest.mark.parametrize("keep", [0, 1])
def test_a_dataset_without_segmentations_is_refused_before_training(shapes, tmp_path, keep):
    data = _without_segmentations(shapes, tmp_path / "boxes-only", keep)
    first = json.loads((data / "train.json").read_text())["annotations"][keep]
    model = visionkit.Model("maskrcnn-small")
    with pytest.raises(DataError) as raised:
        model.train(data=data, epochs=1, imgsz=64, project=tmp_path / "runs", workers=0)
    message = str(raised.value)
    assert "train.json" in message and "segmentation" in message
    assert f"image {first['image_id']}, annotation {first['id']}" in message
    assert not (tmp_path / "runs").exists()  # refused before any run folder or epoch


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """``maskrcnn-small`` from scratch, two epochs of 60 steps on one thread (about 35 s of
    CPU): (dataset, run folder)."""
    root = tmp_path_factory.mktemp("maskrcnn")
    data = export_synthetic(
        root / "shapes", kind="shapes", format="coco", train=240, val=8, imgsz=96, seed=0,
        workers=1,
    )  # fmt: skip
    result = visionkit.Model("maskrcnn-small").train(
        data=data, epochs=2, batch=4, imgsz=96, optimizer="adamw", lr=3e-3, weight_decay=1e-4,
        warmup_epochs=0.3, scale=(1, 1), colour=False, seed=0, device="cpu", workers=0,
        quiet=True, project=root,
    )  # fmt: skip
    return data, result.best_path.parents[1]


def test_each_epoch_reports_box_and_mask_metrics(trained):
    _, run = trained
    header, *rows = (run / "results.csv").read_text().splitlines()
    columns = header.split(",")
    assert len(rows) == 2 and {"val/map", "val/segm_map", "val/segm_map_50"} <= set(columns)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["fitness_key"] == "map" and "segm_map_per_class" in summary["last"]
    maps = [float(row.split(",")[columns.index("val/map")]) for row in rows]
    assert summary["best_fitness"] == pytest.approx(max(maps))


def test_trained_box_and_mask_metrics_equal_pycocotools(trained):
    data, run = trained
    predictions = json.loads((run / "predictions.json").read_text())
    assert all("segmentation" in p for p in predictions)
    metrics = json.loads((run / "val_metrics.json").read_text())
    assert metrics["segm_map_50"] > 0  # something to compare
    _assert_equals_cocoeval(metrics, data / "val.json", predictions)


def _filled_boxes(predictions: list[dict], images: dict[int, dict]) -> list[dict]:
    """Each prediction with its own box filled in as its mask."""
    filled = []
    for p in predictions:
        image = images[p["image_id"]]
        box = np.asarray([p["bbox"]], dtype=np.float64)
        rle = mask_utils.frPyObjects(box, image["height"], image["width"])[0]
        filled.append({**p, "segmentation": {**rle, "counts": rle["counts"].decode()}})
    return filled


def _shuffled(predictions: list[dict]) -> list[dict]:
    """The masks handed on half the list further: each detection gets a mask found in
    another image (the images are the same size), of no object of its own."""
    masks = [p["segmentation"] for p in predictions]
    moved = masks[len(masks) // 2 :] + masks[: len(masks) // 2]
    return [{**p, "segmentation": m} for p, m in zip(predictions, moved, strict=True)]


def test_learned_masks_fit_far_better_than_filled_boxes_or_other_images_masks(trained):
    data, run = trained
    predictions = json.loads((run / "predictions.json").read_text())
    doc = json.loads((data / "val.json").read_text())
    images = {image["id"]: image for image in doc["images"]}
    learned = json.loads((run / "val_metrics.json").read_text())["segm_map_50"]
    filled = evaluate_coco(doc, _filled_boxes(predictions, images), iou_type="segm")["map_50"]
    shuffled = evaluate_coco(doc, _shuffled(predictions), iou_type="segm")["map_50"]
    assert learned >= 0.02
    assert learned >= 2.5 * filled and learned >= 2.5 * shuffled


def test_the_checkpoint_validates_and_predicts_with_masks(trained, tmp_path):
    data, run = trained
    model = visionkit.Model(run / "weights" / "best.pt")
    metrics = model.val(data=data, device="cpu", project=tmp_path, save_dir=tmp_path / "val")
    final = json.loads((run / "val_metrics.json").read_text())
    assert metrics["segm_map"] == final["segm_map"] and metrics["map"] == final["map"]
    path = sorted((data / "images" / "val").glob("*.png"))[0]
    (result,) = model.predict(path, device="cpu", conf=0.05)
    assert result.masks is not None and result.masks.shape == (len(result), 96, 96)
