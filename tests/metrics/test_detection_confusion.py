"""The detection confusion matrix: supervision's counts on random data, and hand-built cases.

supervision's ``ConfusionMatrix`` is laid out ``[true, predicted]`` (ours, like Ultralytics',
``[predicted, true]``), keeps detections scoring ``>= conf`` (as ours) and matches greedily
with same-class pairs first. Ours follows Ultralytics: the best box per detection, then the
best detection per box, whatever the classes. The two agree whenever no box or detection has
two candidates of different standing, which the random scenes below guarantee; the cases
where they part are pinned by hand further down.
"""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from visionkit.errors import ConfigError
from visionkit.metrics._detection_confusion import DetectionConfusionMatrix

NUM_CLASSES = 4
BACKGROUND = NUM_CLASSES


def _random_scene(rng):
    """One image: cells 100 px apart, each with at most one box and 0-3 detections near it.

    Detections are jittered copies of the cell's box, with IoU on both sides of the
    threshold, and scores in multiples of 0.05, so some equal ``conf`` exactly. Competing
    detections have different classes, and only the best-overlapping one may have the box's
    class: then supervision's same-class preference and our best-overlap rule pick the same.
    """
    pred_boxes, scores, pred_labels, gt_boxes, gt_labels = [], [], [], [], []
    for cell in range(rng.integers(0, 7)):
        origin = np.array([cell * 100.0, 0.0, cell * 100.0, 0.0])
        box = origin + np.r_[rng.uniform(10, 20, 2), rng.uniform(50, 70, 2)]
        jittered = box + rng.normal(0, 8, (rng.integers(0, 4), 4)).clip(-10, 10)
        label = rng.integers(0, NUM_CLASSES)
        others = rng.permutation(np.delete(np.arange(NUM_CLASSES), label))
        if rng.uniform() < 0.7:
            gt_boxes.append(box)
            gt_labels.append(label)
            jittered = jittered[np.argsort(-sv.box_iou_batch(box[None], jittered)[0])]
            if rng.uniform() < 0.5:
                others = np.r_[label, others]
        pred_boxes += list(jittered)
        scores += list(rng.integers(0, 21, len(jittered)) * 0.05)
        pred_labels += list(others[: len(jittered)])
    return (
        np.array(pred_boxes).reshape(-1, 4),
        np.array(scores),
        np.array(pred_labels, int),
        np.array(gt_boxes).reshape(-1, 4),
        np.array(gt_labels, int),
    )


@pytest.mark.parametrize("seed", range(5))
def test_matches_supervision_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    scenes = [_random_scene(rng) for _ in range(30)]
    ours = DetectionConfusionMatrix(NUM_CLASSES, conf=0.25, iou_threshold=0.45)
    for scene in scenes:
        ours.update(*scene)
    reference = sv.ConfusionMatrix.from_tensors(
        predictions=[np.column_stack([p, c, s]) for p, s, c, _, _ in scenes],
        targets=[np.column_stack([g, c]) for _, _, _, g, c in scenes],
        classes=[str(i) for i in range(NUM_CLASSES)],
        conf_threshold=0.25,
        iou_threshold=0.45,
    )
    np.testing.assert_array_equal(ours.matrix, reference.matrix.T)
    assert ours.matrix[BACKGROUND].sum() > 0 and ours.matrix[:, BACKGROUND].sum() > 0
    assert np.trace(ours.matrix) > 0 and (ours.matrix - np.diag(np.diag(ours.matrix))).sum() > 0


def _single(pred_boxes, scores, pred_labels, gt_boxes, gt_labels, **kwargs):
    matrix = DetectionConfusionMatrix(NUM_CLASSES, **kwargs)
    matrix.update(pred_boxes, scores, pred_labels, gt_boxes, gt_labels)
    return matrix.matrix


def test_background_row_and_column_by_hand():
    matrix = _single(
        pred_boxes=[[0, 0, 10, 10], [20, 0, 30, 10], [100, 100, 110, 110]],
        scores=[0.9, 0.8, 0.7],
        pred_labels=[0, 1, 2],
        gt_boxes=[[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]],
        gt_labels=[0, 3, 1],
    )
    expected = np.zeros((5, 5), int)
    expected[0, 0] = 1  # found, right class
    expected[1, 3] = 1  # a class-3 box called class 1
    expected[BACKGROUND, 1] = 1  # the class-1 box at (50, 50) missed
    expected[2, BACKGROUND] = 1  # the class-2 detection on nothing
    np.testing.assert_array_equal(matrix, expected)


def test_images_without_boxes_or_detections():
    nothing = np.zeros((0, 4))
    only_gt = _single(nothing, [], [], [[0, 0, 1, 1], [5, 5, 6, 6]], [2, 2])
    only_pred = _single([[0, 0, 1, 1]], [0.5], [3], nothing, [])
    empty = _single(nothing, [], [], nothing, [])
    assert only_gt[BACKGROUND, 2] == 2 and only_gt.sum() == 2
    assert only_pred[3, BACKGROUND] == 1 and only_pred.sum() == 1
    assert empty.sum() == 0 and empty.shape == (5, 5)


def test_confidence_threshold_keeps_scores_equal_to_it():
    box = [[0, 0, 10, 10]]
    kept = _single(box, [0.25], [1], box, [1], conf=0.25)
    dropped = _single(box, [0.2499], [1], box, [1], conf=0.25)
    assert kept[1, 1] == 1 and kept.sum() == 1
    assert dropped[BACKGROUND, 1] == 1 and dropped.sum() == 1


def test_iou_threshold_is_strict():
    half = _single([[0, 0, 10, 20]], [0.9], [0], [[0, 0, 10, 10]], [0], iou_threshold=0.5)
    assert half[BACKGROUND, 0] == 1 and half[0, BACKGROUND] == 1  # IoU exactly 0.5: no match


def test_a_detection_does_not_fall_back_to_its_second_box():
    # A has IoU 1 with box 0; B has IoU 100/110 with box 0 and 90/130 with box 1. B's best box
    # goes to A, so B stays unmatched and box 1 is missed (Ultralytics). supervision's greedy
    # matching pairs B with box 1 instead.
    args = ([[0, 0, 10, 10], [0, 0, 10, 11]], [0.9, 0.8], [0, 0], [[0, 0, 10, 10], [0, 2, 10, 13]])
    ours = _single(*args, [0, 0])
    assert ours[0, 0] == 1 and ours[BACKGROUND, 0] == 1 and ours[0, BACKGROUND] == 1
    reference = _supervision_single(*args, [0, 0])
    assert reference[0, 0] == 2


def test_the_best_overlap_wins_whatever_the_class():
    # A class-0 box: a class-1 detection with IoU 1 and a class-0 one with IoU 100/120.
    args = ([[0, 0, 10, 10], [0, 0, 10, 12]], [0.9, 0.9], [1, 0], [[0, 0, 10, 10]], [0])
    ours = _single(*args)
    assert ours[1, 0] == 1 and ours[0, BACKGROUND] == 1 and ours.sum() == 2
    reference = _supervision_single(*args)  # supervision prefers the same-class pair
    assert reference[0, 0] == 1 and reference[1, BACKGROUND] == 1


def test_equal_overlaps_go_to_the_lower_index():
    box = [[0, 0, 10, 10]]
    matrix = _single(box * 2, [0.9, 0.9], [2, 3], box, [0])
    assert matrix[2, 0] == 1 and matrix[3, BACKGROUND] == 1


def _supervision_single(pred_boxes, scores, pred_labels, gt_boxes, gt_labels):
    reference = sv.ConfusionMatrix.from_tensors(
        predictions=[np.column_stack([pred_boxes, pred_labels, scores])],
        targets=[np.column_stack([gt_boxes, gt_labels])],
        classes=[str(i) for i in range(NUM_CLASSES)],
        conf_threshold=0.25,
        iou_threshold=0.45,
    )
    return reference.matrix.T  # as [pred, true]


def test_normalized_and_tp_fp_by_hand():
    matrix = DetectionConfusionMatrix(2)
    box, other = [[0, 0, 10, 10]], [[50, 50, 60, 60]]
    matrix.update(box, [0.9], [0], box, [0])  # [0, 0]
    matrix.update(box, [0.9], [1], box, [0])  # [1, 0]
    matrix.update(box, [0.9], [0], box, [0])  # [0, 0]
    matrix.update(other, [0.9], [0], box, [0])  # [bg, 0] and [0, bg]
    np.testing.assert_array_equal(matrix.matrix, [[2, 0, 1], [1, 0, 0], [1, 0, 0]])
    # Column 0 holds 4 true class-0 boxes: 2/4, 1/4, 1/4; class 1 never occurred: zeros;
    # the background column's single count is a class-0 false alarm.
    np.testing.assert_allclose(matrix.normalized(), [[0.5, 0, 1], [0.25, 0, 0], [0.25, 0, 0]])
    tp, fp = matrix.tp_fp()
    np.testing.assert_array_equal(tp, [2, 0])
    np.testing.assert_array_equal(fp, [1, 1])  # row sums minus the diagonal: [3 - 2, 1 - 0]


def test_bad_input_names_the_field_and_leaves_counts_alone():
    matrix = DetectionConfusionMatrix(2)
    box = [[0, 0, 10, 10]]
    with pytest.raises(ConfigError, match=r"field 'pred_labels'.*out of range"):
        matrix.update(box, [0.9], [2], box, [0])
    with pytest.raises(ConfigError, match=r"field 'gt_labels'.*out of range"):
        matrix.update(box, [0.9], [0], box, [-1])
    with pytest.raises(ConfigError, match="field 'gt_boxes'"):
        matrix.update(box, [0.9], [0], [[0, 0, 10]], [0])
    with pytest.raises(ConfigError, match="field 'pred_scores'"):
        matrix.update(box, [0.9, 0.8], [0], box, [0])
    with pytest.raises(ConfigError, match=r"field 'pred_labels'.*integers"):
        matrix.update(box, [0.9], [0.5], box, [0])
    assert matrix.matrix.sum() == 0
    with pytest.raises(ConfigError, match="num_classes"):
        DetectionConfusionMatrix(0)
    with pytest.raises(ConfigError, match="iou_threshold"):
        DetectionConfusionMatrix(2, iou_threshold=2)


def test_matrix_is_a_copy():
    matrix = DetectionConfusionMatrix(1)
    matrix.matrix[0, 0] = 5
    assert matrix.matrix.sum() == 0
