"""Tests for visionkit.metrics.segmentation, held to torchmetrics and scikit-learn."""

from __future__ import annotations

import pickle
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from visionkit.errors import ConfigError, DataError
from visionkit.metrics.segmentation import (
    SegmentationMetrics,
    boundary_iou,
    boundary_width,
    segmentation_metrics,
)

CLASSES = 6  # class 5 never occurs, in targets or predictions
IGNORE = 255


def blobs(seed: int, batch: int = 3, height: int = 40, width: int = 56) -> np.ndarray:
    """``[B, H, W]`` label maps of overlapping rectangles of classes 0..4, with large regions."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, height, width), np.int64)
    for image in labels:
        for _ in range(8):
            y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
            image[y : y + rng.integers(4, 20), x : x + rng.integers(4, 25)] = rng.integers(0, 5)
    return labels


def scored(labels: np.ndarray, seed: int) -> np.ndarray:
    """Logits ``[B, C, H, W]`` whose argmax is ``labels`` where they beat random noise."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(labels.shape[0], CLASSES, *labels.shape[1:]))
    logits += 1.8 * np.eye(CLASSES)[labels].transpose(0, 3, 1, 2)
    logits[:, 5] -= 10  # class 5 is never predicted
    return logits.astype(np.float32)


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    targets = blobs(0)
    targets[:, 18:23, :] = IGNORE  # bands across objects and their edges
    targets[2, :, 40:44] = IGNORE
    return scored(blobs(0), seed=1), targets


def test_iou_matches_torchmetrics_jaccard(batch) -> None:
    logits, targets = batch
    result = segmentation_metrics(logits, targets, CLASSES)
    preds, target = torch.from_numpy(logits), torch.from_numpy(targets)
    per_class = MulticlassJaccardIndex(CLASSES, average=None, ignore_index=IGNORE)(preds, target)
    macro = MulticlassJaccardIndex(CLASSES, average="macro", ignore_index=IGNORE)(preds, target)
    # torchmetrics reports 0 for the class absent from targets and predictions; we say NaN.
    assert np.isnan(result["iou_per_class"][5]) and per_class[5] == 0
    np.testing.assert_allclose(result["iou_per_class"][:5], per_class[:5].numpy(), atol=1e-6)
    assert 0.3 < result["miou"] < 0.95
    assert result["miou"] == pytest.approx(macro.item(), abs=1e-6)


def test_without_boundaries_the_iou_family_is_unchanged(batch) -> None:
    logits, targets = batch
    full = SegmentationMetrics(CLASSES)
    fast = SegmentationMetrics(CLASSES, boundary_dilation=None)
    full.update(logits, targets)
    fast.update(logits, targets)
    full_result, fast_result = full.compute(), fast.compute()
    for key in ("miou", "mdice", "pixel_accuracy", "mean_accuracy"):
        assert fast_result[key] == full_result[key], key
    assert 0 < full_result["mboundary_iou"] < 1 and np.isnan(fast_result["mboundary_iou"])


def test_dice_matches_torchmetrics_f1(batch) -> None:
    logits, targets = batch
    result = segmentation_metrics(logits, targets, CLASSES)
    preds, target = torch.from_numpy(logits), torch.from_numpy(targets)
    per_class = MulticlassF1Score(CLASSES, average=None, ignore_index=IGNORE)(preds, target)
    macro = MulticlassF1Score(CLASSES, average="macro", ignore_index=IGNORE)(preds, target)
    np.testing.assert_allclose(result["dice_per_class"][:5], per_class[:5].numpy(), atol=1e-6)
    assert np.isnan(result["dice_per_class"][5])
    assert result["mdice"] == pytest.approx(macro.item(), abs=1e-6)


def test_accuracies_and_confusion_match_sklearn(batch) -> None:
    logits, targets = batch
    result = segmentation_metrics(logits, targets, CLASSES)
    kept = targets != IGNORE
    y_true, y_pred = targets[kept], logits.argmax(1)[kept]
    assert result["pixel_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    with warnings.catch_warnings():  # sklearn warns about predicted classes absent from y_true
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(y_true, y_pred)
    assert result["mean_accuracy"] == pytest.approx(balanced, abs=1e-12)
    expected = confusion_matrix(y_true, y_pred, labels=range(CLASSES))
    np.testing.assert_array_equal(result["confusion_matrix"], expected)
    assert result["confusion_matrix"].sum() == kept.sum() < targets.size


def test_hand_worked_two_class_values() -> None:
    target = np.array([[[0, 0, 1, 1]]])
    pred = np.array([[[0, 1, 1, 1]]])
    result = segmentation_metrics(pred, target, 2, ignore_index=None)
    np.testing.assert_allclose(result["iou_per_class"], [1 / 2, 2 / 3])
    np.testing.assert_allclose(result["dice_per_class"], [2 / 3, 4 / 5])
    assert result["miou"] == pytest.approx(7 / 12)
    assert result["pixel_accuracy"] == pytest.approx(3 / 4)
    assert result["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    np.testing.assert_array_equal(result["confusion_matrix"], [[1, 1], [0, 2]])


def test_ignored_pixels_change_nothing(batch) -> None:
    _, targets = batch
    preds = np.roll(blobs(0), 1, axis=2)  # clean regions, so their boundaries are thin bands
    ignored = targets == IGNORE
    first = segmentation_metrics(preds, targets, CLASSES)
    assert 0.2 < first["mboundary_iou"] < 0.9
    for label in (0, 4):  # the lowest and the highest label in play
        assert (preds[ignored] != label).sum() > 20
        second = segmentation_metrics(np.where(ignored, label, preds), targets, CLASSES)
        for key, value in first.items():
            np.testing.assert_array_equal(value, second[key], err_msg=key)


def test_streaming_equals_one_shot(batch) -> None:
    logits, targets = batch
    streamed = SegmentationMetrics(CLASSES)
    for index in range(len(targets)):
        streamed.update(torch.from_numpy(logits[index : index + 1]), targets[index : index + 1])
    result, expected = streamed.compute(), segmentation_metrics(logits, targets, CLASSES)
    for key, value in expected.items():
        np.testing.assert_allclose(result[key], value, rtol=1e-12, err_msg=key)
    streamed.reset()
    assert np.isnan(streamed.compute()["miou"])
    assert streamed.compute()["confusion_matrix"].sum() == 0


def reference_boundary(mask: np.ndarray, dilation: float) -> np.ndarray:
    """Cheng et al.'s boundary: the mask minus its erosion by a 3x3 square, ``d`` times."""
    height, width = mask.shape
    d = max(1, round(dilation * np.sqrt(height**2 + width**2)))
    framed = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(framed, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return mask & ~eroded.astype(bool)


@pytest.mark.parametrize("dilation", [0.02, 0.05])
def test_boundary_iou_matches_per_class_reference(dilation: float) -> None:
    targets, preds = blobs(3), blobs(4)
    intersection, union = np.zeros(CLASSES), np.zeros(CLASSES)
    for pred, target in zip(preds, targets, strict=True):
        for c in range(CLASSES):
            true_edge = reference_boundary(target == c, dilation)
            pred_edge = reference_boundary(pred == c, dilation)
            intersection[c] += (true_edge & pred_edge).sum()
            union[c] += (true_edge | pred_edge).sum()
    result = segmentation_metrics(preds, targets, CLASSES, boundary_dilation=dilation)
    expected = intersection[:5] / union[:5]
    np.testing.assert_allclose(result["boundary_iou_per_class"][:5], expected, rtol=1e-12)
    assert np.isnan(result["boundary_iou_per_class"][5])
    assert result["mboundary_iou"] == pytest.approx(expected.mean())


def square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20 + shift : 40 + shift] = True
    return mask


def test_boundary_iou_of_a_square_shifted_by_one_pixel() -> None:
    # d = round(0.02 * hypot(64, 64)) = 2: each boundary is the 20x20 square minus its 16x16
    # core (144 px); they share rows 20-39 x cols 21-39 minus the cores' union, 380 - 272.
    assert boundary_width(64, 64, 0.02) == 2
    assert boundary_iou(square(1), square()) == pytest.approx(108 / 180)
    result = segmentation_metrics(square(1)[None].astype(int), square()[None].astype(int), 2)
    assert result["boundary_iou_per_class"][1] == pytest.approx(108 / 180)
    assert result["iou_per_class"][1] == pytest.approx(380 / 420)  # mask IoU hardly notices


def test_boundary_iou_of_identical_and_empty_masks() -> None:
    assert boundary_iou(square(), square()) == 1.0
    assert boundary_iou(np.zeros((8, 8), bool), np.zeros((8, 8), bool)) == 0.0
    assert boundary_iou(square(), np.zeros((64, 64), bool)) == 0.0
    labels = blobs(5)
    result = segmentation_metrics(labels, labels, CLASSES)
    np.testing.assert_array_equal(result["boundary_iou_per_class"][:5], 1.0)


def test_boundary_iou_punishes_a_boundary_error_on_a_large_object_more() -> None:
    big = np.zeros((200, 200), bool)
    big[20:180, 20:180] = True
    shrunk = np.zeros_like(big)
    shrunk[22:178, 22:178] = True  # two pixels lost all round: d = round(0.02 * 283) = 6
    mask_iou = shrunk.sum() / big.sum()
    assert mask_iou > 0.95
    assert boundary_iou(shrunk, big) < 0.6
    assert boundary_iou(shrunk, big) == pytest.approx(
        (reference_boundary(big, 0.02) & reference_boundary(shrunk, 0.02)).sum()
        / (reference_boundary(big, 0.02) | reference_boundary(shrunk, 0.02)).sum()
    )


def test_bad_labels_name_the_value_and_field() -> None:
    metrics = SegmentationMetrics(3)
    metrics.update(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int))
    target = np.zeros((2, 4, 4), int)
    target[1, 2, 2] = 7
    with pytest.raises(DataError, match=r"image 3: field 'target': label 7 is outside \[0, 3\)"):
        metrics.update(np.zeros((2, 4, 4), int), target)
    with pytest.raises(DataError, match=r"field 'pred': label -1"):
        metrics.update(np.full((2, 4, 4), -1), np.zeros((2, 4, 4), int))
    with pytest.raises(DataError, match="label 255"):  # ignore_index is for targets only
        metrics.update(np.full((2, 4, 4), 255), np.zeros((2, 4, 4), int))
    with pytest.raises(DataError, match="label 255"):
        SegmentationMetrics(3, ignore_index=None).update(target * 0, target * 0 + 255)


def test_bad_arguments_raise_config_error() -> None:
    metrics = SegmentationMetrics(3)
    with pytest.raises(ConfigError, match="C = 4, expected 3"):
        metrics.update(np.zeros((1, 4, 5, 5)), np.zeros((1, 5, 5), int))
    with pytest.raises(ConfigError, match="does not match target"):
        metrics.update(np.zeros((1, 5, 6), int), np.zeros((1, 5, 5), int))
    with pytest.raises(ConfigError, match=r"\[B, H, W\]"):
        metrics.update(np.zeros((5, 5), int), np.zeros((5, 5), int))
    with pytest.raises(ConfigError, match="integers"):
        metrics.update(np.zeros((1, 5, 5)), np.zeros((1, 5, 5), int))
    with pytest.raises(ConfigError, match="is a class id"):
        SegmentationMetrics(3, ignore_index=0)


def _split_worker(rank: int, world: int, rendezvous: str, folder: str, logits, targets) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        metrics = SegmentationMetrics(CLASSES)
        metrics.update(logits[rank::world], targets[rank::world])
        with open(f"{folder}/rank{rank}.pkl", "wb") as file:
            pickle.dump(metrics.compute(), file)
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(batch, tmp_path) -> None:
    logits, targets = batch
    args = (2, f"file://{tmp_path}/rendezvous", str(tmp_path), logits, targets)
    mp.start_processes(_split_worker, args=args, nprocs=2, start_method="fork")
    expected = segmentation_metrics(logits, targets, CLASSES)
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as file:
            result = pickle.load(file)
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-12, err_msg=key)
