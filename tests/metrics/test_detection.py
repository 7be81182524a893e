"""Tests for visionkit.metrics.detection, held to pycocotools and torchmetrics on the same input."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionkit.data.synthetic.evaluation import make_evaluation_set
from visionkit.errors import ConfigError, DataError
from visionkit.metrics import _coco_match
from visionkit.metrics._voc import evaluate_voc
from visionkit.metrics.detection import (
    DetectionConfusionMatrix,
    DetectionEvaluator,
    evaluate_coco,
    evaluate_coco_curves,
)
from visionkit.ops.masks import segmentation_to_mask
from visionkit.structures import Detections

STATS = (
    *("map", "map_50", "map_75", "map_small", "map_medium", "map_large"),
    *("mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"),
)


def pycocotools_eval(gt: dict, results: list, iou_type: str, max_dets=None) -> COCOeval:
    """pycocotools' COCOeval after evaluate/accumulate/summarize, on copies of the input."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        if max_dets is not None:
            evaluation.params.maxDets = list(max_dets)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def reference(evaluation: COCOeval) -> dict:
    """The 12 stats, and per-class AP/AR from ``eval`` as torchmetrics reads them."""
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    recall = evaluation.eval["recall"][:, :, 0, -1]

    def mean(values: np.ndarray) -> float:
        return float(values[values > -1].mean()) if (values > -1).any() else -1.0

    expected = dict(zip(STATS, evaluation.stats.tolist(), strict=True))
    classes = evaluation.params.catIds
    expected["map_per_class"] = [mean(precision[:, :, k]) for k in range(len(classes))]
    expected["mar_100_per_class"] = [mean(recall[:, k]) for k in range(len(classes))]
    expected["classes"] = [int(c) for c in classes]
    return expected


def assert_matches(result: dict, expected: dict, tol: float = 1e-9) -> None:
    """Every stat and every per-class value of ``expected`` (by category id) within ``tol``."""
    for key in STATS:
        assert result[key] == pytest.approx(expected[key], abs=tol), key
    ours, theirs = _per_class(result), _per_class(expected)
    for category, values in ours.items():
        assert values == pytest.approx(theirs[category], abs=tol), category
    for category in set(theirs) - set(ours):  # only categories that nothing mentions
        assert theirs[category] == (-1.0, -1.0)


def _per_class(result: dict) -> dict[int, tuple[float, float]]:
    """Category id -> (AP, AR@100)."""
    values = zip(result["map_per_class"], result["mar_100_per_class"], strict=True)
    return dict(zip(result["classes"], values, strict=True))


def per_image(gt: dict, results: list, *, masks: str | None = None) -> tuple[list, list]:
    """The COCO set as evaluator input: one (prediction, target) dict per image, boxes xyxy.

    ``masks``: None (boxes only), ``"rle"`` (COCO segmentations as given, polygons with
    ``size``) or ``"bitmap"`` (binary ``[N, H, W]`` arrays).
    """
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    anns = {i: [] for i in sizes}
    dets = {i: [] for i in sizes}
    for ann in gt["annotations"]:
        anns[ann["image_id"]].append(ann)
    for det in results:
        dets[det["image_id"]].append(det)
    preds, targets = [], []
    for image_id, size in sizes.items():
        target = {
            "boxes": xyxy([a["bbox"] for a in anns[image_id]]),
            "labels": np.array([a["category_id"] for a in anns[image_id]], dtype=np.int64),
            "iscrowd": np.array([a["iscrowd"] for a in anns[image_id]]),
            "area": np.array([a["area"] for a in anns[image_id]], dtype=np.float64),
            "image_id": image_id,
            "size": size,
        }
        pred = {
            "scores": np.array([d["score"] for d in dets[image_id]], dtype=np.float64),
            "labels": np.array([d["category_id"] for d in dets[image_id]], dtype=np.int64),
        }
        if masks is None:
            pred["boxes"] = xyxy([d["bbox"] for d in dets[image_id]])
        else:
            target["masks"] = [a["segmentation"] for a in anns[image_id]]
            pred["masks"] = [d["segmentation"] for d in dets[image_id]]
            if masks == "bitmap":
                for element in (pred, target):
                    bitmaps = [segmentation_to_mask(m, *size) for m in element["masks"]]
                    element["masks"] = np.array(bitmaps).reshape(-1, *size)
        preds.append(pred)
        targets.append(target)
    return preds, targets


def xyxy(boxes: list) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def as_coco(preds: list, targets: list) -> tuple[dict, list]:
    """Evaluator input back to COCO (xywh as x2 - x1), categories = the labels seen."""
    annotations, results = [], []
    for pred, target in zip(preds, targets, strict=True):
        for box, label, crowd, area in zip(
            target["boxes"], target["labels"], target["iscrowd"], target["area"], strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": target["image_id"],
                    "category_id": int(label),
                    "bbox": [*box[:2].tolist(), *(box[2:] - box[:2]).tolist()],
                    "area": float(area),
                    "iscrowd": int(crowd),
                }
            )
        for box, label, score in zip(pred["boxes"], pred["labels"], pred["scores"], strict=True):
            results.append(
                {
                    "image_id": target["image_id"],
                    "category_id": int(label),
                    "bbox": [*box[:2].tolist(), *(box[2:] - box[:2]).tolist()],
                    "score": float(score),
                }
            )
    labels = {a["category_id"] for a in annotations} | {r["category_id"] for r in results}
    images = [{"id": t["image_id"], "height": 800, "width": 800} for t in targets]
    gt = {"images": images, "categories": [{"id": c} for c in sorted(labels)]}
    return gt | {"annotations": annotations}, results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_equals_pycocotools(seed: int) -> None:
    gt, results = make_evaluation_set(seed=seed, num_images=120)
    evaluation = pycocotools_eval(gt, results, "bbox")
    assert_matches(evaluate_coco(gt, results), reference(evaluation))
    curves = evaluate_coco_curves(gt, results)  # bitwise, not just within 1e-9
    np.testing.assert_array_equal(curves.precision, evaluation.eval["precision"])
    np.testing.assert_array_equal(curves.recall, evaluation.eval["recall"])
    np.testing.assert_array_equal(curves.scores, evaluation.eval["scores"])
    assert curves.classes.tolist() == evaluation.params.catIds


@pytest.mark.parametrize("chunk", [None, 64])
def test_crowded_groups_equal_pycocotools(chunk: int | None, monkeypatch) -> None:
    """Few categories, over 100 predictions per (image, category), many crowd regions; also
    with the candidate pairs made in many small chunks."""
    if chunk is not None:
        monkeypatch.setattr(_coco_match, "_PAIR_CHUNK", chunk)
    gt, results = make_evaluation_set(
        seed=3,
        num_images=40,
        num_categories=3,
        gt_per_image=25,
        preds_per_image=150,
        crowd_fraction=0.15,
        crowded_fraction=0.3,
    )
    evaluation = pycocotools_eval(gt, results, "bbox")
    assert_matches(evaluate_coco(gt, results), reference(evaluation))
    np.testing.assert_array_equal(
        evaluate_coco_curves(gt, results).precision, evaluation.eval["precision"]
    )


def test_equal_ious_go_to_the_later_object() -> None:
    """A detection equally close to two objects takes the later one, as pycocotools does;
    the next detection then finds the earlier one at IoU 0.82 (not the later one at 0.54)."""
    gt = {
        "images": [{"id": 1, "width": 50, "height": 50}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 100, "iscrowd": 0}
            for i, box in enumerate([[0, 0, 10, 10], [2, 0, 10, 10]])
        ],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [-1, 0, 10, 10], "score": 0.8},
    ]
    result = evaluate_coco(gt, results)
    assert result["map_75"] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(0.7)
    assert_matches(result, reference(pycocotools_eval(gt, results, "bbox")))


def test_custom_max_detections_equal_pycocotools() -> None:
    gt, results = make_evaluation_set(seed=4, num_images=40, num_categories=5)
    evaluation = pycocotools_eval(gt, results, "bbox", max_dets=(2, 5, 20))
    curves = evaluate_coco_curves(gt, results, max_detection_thresholds=(20, 2, 5))
    assert curves.max_detections == (2, 5, 20)
    np.testing.assert_array_equal(curves.precision, evaluation.eval["precision"])
    np.testing.assert_array_equal(curves.recall, evaluation.eval["recall"])
    result = evaluate_coco(gt, results, max_detection_thresholds=(2, 5, 20))
    assert result["mar_5"] == pytest.approx(evaluation.stats[7], abs=1e-12)
    assert "mar_20_per_class" in result


@pytest.mark.parametrize("seed", [0, 1])
def test_segm_equals_pycocotools(seed: int) -> None:
    """Ground truth as polygons, compressed RLE and (crowd) uncompressed RLE."""
    gt, results = make_evaluation_set(seed=seed, num_images=25, num_categories=6, segm=True)
    kinds = {type(a["segmentation"]).__name__ for a in gt["annotations"]}
    assert kinds == {"list", "dict"}
    evaluation = pycocotools_eval(gt, results, "segm")
    assert_matches(evaluate_coco(gt, results, iou_type="segm"), reference(evaluation))
    curves = evaluate_coco_curves(gt, results, iou_type="segm")
    np.testing.assert_array_equal(curves.precision, evaluation.eval["precision"])


def test_segm_results_with_boxes_take_box_areas_as_pycocotools() -> None:
    """pycocotools' loadRes takes w * h as a result's area when results carry ``bbox``."""
    gt, results = make_evaluation_set(seed=5, num_images=25, num_categories=6, segm=True)
    rng = np.random.default_rng(0)
    for record in results:
        record["bbox"] = (rng.uniform(0, 100, 4) * [1, 1, 0.5, 0.5]).tolist()
    evaluation = pycocotools_eval(gt, results, "segm")
    assert_matches(evaluate_coco(gt, results, iou_type="segm"), reference(evaluation))


def test_evaluator_streaming_equals_one_shot_and_pycocotools() -> None:
    preds, targets = per_image(*make_evaluation_set(seed=6, num_images=90))
    one_shot = DetectionEvaluator()
    one_shot.update(preds, targets)
    expected = one_shot.compute()
    streamed = DetectionEvaluator()
    for start, stop in ((0, 1), (1, 30), (30, 31), (31, 90)):
        streamed.update(preds[start:stop], targets[start:stop])
    assert streamed.compute() == expected
    assert_matches(expected, reference(pycocotools_eval(*as_coco(preds, targets), "bbox")))
    assert streamed.curves is not None and streamed.curves.precision.shape[2] == len(
        expected["classes"]
    )
    streamed.reset()
    assert streamed.curves is None
    streamed.update(preds[:1], targets[:1])
    assert streamed.compute() != expected


def test_evaluator_torch_inputs_match_torchmetrics() -> None:
    """Tensors, no image ids, default areas (box area): torchmetrics' conventions."""
    from torchmetrics.detection import MeanAveragePrecision

    preds, targets = per_image(*make_evaluation_set(seed=7, num_images=40, num_categories=8))
    tensors = [{k: torch.as_tensor(v) for k, v in p.items()} for p in preds]
    truth = [
        {"boxes": torch.as_tensor(t["boxes"]), "labels": torch.as_tensor(t["labels"])}
        for t in targets
    ]
    evaluator = DetectionEvaluator()
    evaluator.update(tensors, truth)
    result = evaluator.compute()
    # torchmetrics' default thresholds come from float32 torch.linspace (0.550000011920929):
    # give it COCO's float64 ones, so both evaluate the same protocol.
    metric = MeanAveragePrecision(
        class_metrics=True,
        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
        rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
    )
    metric.update(tensors, truth)
    expected = metric.compute()
    for key in STATS:
        assert result[key] == pytest.approx(float(expected[key]), abs=1e-6), key
    assert result["classes"] == expected["classes"].tolist()
    np.testing.assert_allclose(result["map_per_class"], expected["map_per_class"], atol=1e-6)


def test_evaluator_takes_detections_objects() -> None:
    """Any object with boxes/scores/labels attributes, such as visionkit's Detections."""
    preds, targets = per_image(*make_evaluation_set(seed=13, num_images=20, num_categories=5))
    objects = [Detections(p["boxes"], p["scores"], p["labels"]) for p in preds]
    as_float32 = [
        {"boxes": d.boxes.numpy(), "scores": d.scores.numpy(), "labels": d.labels.numpy()}
        for d in objects
    ]
    results = []
    for batch in (objects, as_float32):
        evaluator = DetectionEvaluator()
        evaluator.update(batch, targets)
        results.append(evaluator.compute())
    assert results[0] == results[1]
    assert results[0]["map"] > 0


@pytest.mark.parametrize("masks", ["rle", "bitmap"])
def test_evaluator_segm_equals_pycocotools(masks: str) -> None:
    gt, results = make_evaluation_set(seed=8, num_images=8, num_categories=4, segm=True)
    evaluator = DetectionEvaluator(iou_type="segm")
    evaluator.update(*per_image(gt, results, masks=masks))
    assert_matches(evaluator.compute(), reference(pycocotools_eval(gt, results, "segm")))


def test_evaluator_takes_the_detections_areas_as_given() -> None:
    """Given the ``w * h`` that pycocotools reads off results carrying a ``bbox``, streamed
    ``segm`` evaluation equals pycocotools on those results (mask areas would not)."""
    gt, results = make_evaluation_set(seed=5, num_images=25, num_categories=6, segm=True)
    rng = np.random.default_rng(0)
    for record in results:
        record["bbox"] = (rng.uniform(0, 100, 4) * [1, 1, 0.5, 0.5]).tolist()
    preds, targets = per_image(gt, results, masks="rle")
    boxes = {}
    for record in results:
        boxes.setdefault(record["image_id"], []).append(record["bbox"])
    for pred, target in zip(preds, targets, strict=True):
        sides = np.array(boxes.get(target["image_id"], []), dtype=np.float64).reshape(-1, 4)
        pred["area"] = sides[:, 2] * sides[:, 3]
    evaluator = DetectionEvaluator(iou_type="segm")
    evaluator.update(preds, targets)
    expected = reference(pycocotools_eval(gt, results, "segm"))
    assert_matches(evaluator.compute(), expected)
    without = DetectionEvaluator(iou_type="segm")
    without.update([{k: v for k, v in p.items() if k != "area"} for p in preds], targets)
    assert any(without.compute()[key] != expected[key] for key in ("map_small", "map_medium"))


def _split_worker(rank: int, world: int, rendezvous: str, folder: str, data) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        preds, targets = data
        evaluator = DetectionEvaluator()
        evaluator.update(preds[rank::world], targets[rank::world])  # a sampler's interleaving
        with open(f"{folder}/rank{rank}.pkl", "wb") as file:
            pickle.dump(evaluator.compute(), file)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path) -> None:
    data = per_image(*make_evaluation_set(seed=9, num_images=60, num_categories=10))
    args = (2, f"file://{tmp_path}/rendezvous", str(tmp_path), data)
    mp.start_processes(_split_worker, args=args, nprocs=2, start_method="fork")
    single = DetectionEvaluator()
    single.update(*data)
    expected = single.compute()
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as file:
            assert pickle.load(file) == expected


@pytest.mark.parametrize("protocol", ["voc07", "voc"])
def test_voc_protocol_calls_evaluate_voc(protocol: str) -> None:
    gt, results = make_evaluation_set(seed=10, num_images=30, num_categories=5)
    for ann in gt["annotations"][::7]:
        ann["difficult"] = 1
    preds, targets = per_image(gt, results)
    difficult = {a["id"]: a.get("difficult", 0) for a in gt["annotations"]}
    by_image = {t["image_id"]: [] for t in targets}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(difficult[ann["id"]])
    for target in targets:
        target["difficult"] = np.array(by_image[target["image_id"]], dtype=bool)
    order = np.argsort([t["image_id"] for t in targets], kind="stable")
    direct = evaluate_voc(
        [preds[i]["boxes"] for i in order],
        [preds[i]["scores"] for i in order],
        [preds[i]["labels"] for i in order],
        [targets[i]["boxes"] for i in order],
        [targets[i]["labels"] for i in order],
        [targets[i]["difficult"] for i in order],
        use_07_metric=protocol == "voc07",
    )
    evaluator = DetectionEvaluator(protocol=protocol)
    evaluator.update(preds, targets)
    result = evaluator.compute()
    assert set(result) == {"map_50", "map_per_class", "classes"}
    assert result["map_50"] == pytest.approx(direct.map, abs=1e-12)
    assert result["classes"] == sorted(direct.ap_per_class)
    expected = [-1.0 if np.isnan(v) else v for v in map(direct.ap_per_class.get, result["classes"])]
    assert result["map_per_class"] == pytest.approx(expected, abs=1e-12)
    from_files = evaluate_coco(gt, results, protocol=protocol)
    assert from_files["map_50"] == pytest.approx(direct.map, abs=1e-12)


def test_empty_and_zero_ids() -> None:
    gt, results = make_evaluation_set(seed=11, num_images=20, num_categories=4)
    empty = evaluate_coco(gt, [])
    assert empty["map"] == 0.0 and empty["mar_100"] == 0.0
    no_truth = evaluate_coco(gt | {"annotations": []}, results)
    assert no_truth["map"] == -1.0 and set(no_truth["map_per_class"]) == {-1.0}
    # pycocotools mistakes a match with annotation id 0 for no match; ids mean nothing here.
    shifted = copy.deepcopy(gt)
    for ann in shifted["annotations"]:
        ann["id"] -= 1
    assert evaluate_coco(shifted, results) == evaluate_coco(gt, results)
    nothing = DetectionEvaluator(iou_type="segm")
    nothing.update([{"masks": [], "scores": [], "labels": []}], [{"masks": [], "labels": []}])
    assert nothing.compute()["map"] == -1.0 and nothing.compute()["classes"] == []


def _bad_inputs() -> list:
    def set_field(index: int, field: str, value) -> callable:
        def change(gt: dict, results: list) -> None:
            results[index][field] = value

        return change

    cases = [
        (set_field(3, "score", float("nan")), "prediction 3: field 'score'"),
        (set_field(4, "bbox", [1.0, 2.0, float("inf"), 3.0]), "prediction 4: field 'bbox'"),
        (set_field(5, "bbox", [1.0, 2.0, -4.0, 3.0]), "prediction 5: field 'bbox'"),
        (set_field(6, "bbox", [1.0, 2.0, 3.0]), "prediction 6: field 'bbox'"),
        (set_field(7, "image_id", 10**6), "prediction 7: field 'image_id'"),
        (set_field(8, "category_id", 10**6), "prediction 8: field 'category_id'"),
        (set_field(9, "score", "high"), "prediction 9: field 'score'"),
        (set_field(2, "image_id", 1.5), "prediction 2: field 'image_id'"),
        (lambda gt, results: results[1].pop("score"), "prediction 1: field 'score'"),
        (lambda gt, results: results.__setitem__(2, [1, 2]), "prediction 2: must be an object"),
        (
            lambda gt, results: gt["annotations"][0].update(image_id=10**6),
            "annotation 1: field 'image_id'",
        ),
        (
            lambda gt, results: gt["annotations"][1].update(bbox=[0, 0, float("nan"), 1]),
            "annotation 2: field 'bbox'",
        ),
        (
            lambda gt, results: gt["images"].append(dict(gt["images"][0])),
            "field 'id': image id",
        ),
    ]
    return cases


@pytest.mark.parametrize(("change", "message"), _bad_inputs())
def test_bad_records_are_named(change, message: str, tmp_path) -> None:
    gt, results = make_evaluation_set(seed=12, num_images=10, num_categories=3)
    change(gt, results)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match=message) as caught:
        evaluate_coco(tmp_path / "gt.json", tmp_path / "pred.json")
    assert str(caught.value).startswith(str(tmp_path))


def test_bad_files_are_named(tmp_path) -> None:
    gt, _ = make_evaluation_set(seed=12, num_images=3, num_categories=3)
    (tmp_path / "pred.json").write_text("[{")
    with pytest.raises(DataError, match=r"pred\.json: line 1: not valid JSON"):
        evaluate_coco(gt, tmp_path / "pred.json")
    (tmp_path / "pred.json").write_text('{"image_id": 1}')
    with pytest.raises(DataError, match=r"pred\.json: results must be a list"):
        evaluate_coco(gt, tmp_path / "pred.json")
    with pytest.raises(DataError, match="no such predictions file"):
        evaluate_coco(gt, tmp_path / "missing.json")
    with pytest.raises(DataError, match="field 'categories'"):
        evaluate_coco({"images": []}, [])


def test_evaluator_bad_input_is_named() -> None:
    good = {"boxes": [[0, 0, 5, 5]], "scores": [0.5], "labels": [1]}
    target = {"boxes": [[0, 0, 5, 5]], "labels": [1]}
    evaluator = DetectionEvaluator()
    evaluator.update([good, good], [target, target])
    with pytest.raises(DataError, match="prediction 2: field 'boxes'"):
        evaluator.update([good | {"boxes": [[0, 0, np.nan, 5]]}], [target])
    with pytest.raises(DataError, match="prediction 2: field 'boxes': box 0 has x2 < x1"):
        evaluator.update([good | {"boxes": [[9, 0, 5, 5]]}], [target])
    with pytest.raises(DataError, match="prediction 2: field 'scores'"):
        evaluator.update([good | {"scores": [0.5, 0.2]}], [target])
    with pytest.raises(DataError, match="target 2: field 'labels': missing"):
        evaluator.update([good], [{"boxes": [[0, 0, 5, 5]]}])
    with pytest.raises(DataError, match="prediction 0: field 'masks'"):
        DetectionEvaluator(iou_type="segm").update([good], [target])
    with pytest.raises(ConfigError, match="field 'preds'"):
        evaluator.update([good], [])
    evaluator.update([good, good], [target | {"image_id": 4}, target | {"image_id": 4}])
    with pytest.raises(DataError, match="image 4: field 'image_id'"):
        evaluator.compute()
    with pytest.raises(ConfigError, match="field 'protocol'"):
        DetectionEvaluator(protocol="voc2012")
    with pytest.raises(ConfigError, match="field 'iou_type'"):
        DetectionEvaluator(iou_type="segm", protocol="voc")


def test_import_does_not_import_torch() -> None:
    code = "import sys, visionkit.metrics.detection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_confusion_matrix_is_reexported() -> None:
    from visionkit.metrics import _detection_confusion

    assert DetectionConfusionMatrix is _detection_confusion.DetectionConfusionMatrix
