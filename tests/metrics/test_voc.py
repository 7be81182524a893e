"""PASCAL VOC AP: the 11-point and all-point rules, the devkit's matching, and sklearn's AP."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from visionkit.errors import ConfigError
from visionkit.metrics._voc import evaluate_voc, voc_ap


def _image(preds=(), gts=()):
    """One image's six arrays from ``(box, score, label)`` and ``(box, label, difficult)``."""
    pred_boxes = np.array([p[0] for p in preds], float).reshape(-1, 4)
    gt_boxes = np.array([g[0] for g in gts], float).reshape(-1, 4)
    return (
        pred_boxes,
        np.array([p[1] for p in preds], float),
        np.array([p[2] for p in preds], int),
        gt_boxes,
        np.array([g[1] for g in gts], int),
        np.array([g[2] if len(g) > 2 else False for g in gts], bool),
    )


def _evaluate(images, **kwargs):
    return evaluate_voc(*(list(column) for column in zip(*images, strict=True)), **kwargs)


def test_eleven_point_rule_by_hand():
    recall = np.array([0.1, 0.2, 0.2, 0.4])
    precision = np.array([1.0, 1.0, 2 / 3, 0.5])
    # t = 0, 0.1, 0.2: the best precision at recall >= t is 1; t = 0.3, 0.4: only recall 0.4
    # is that high, precision 0.5; t = 0.5 .. 1: never reached, 0. (3 * 1 + 2 * 0.5) / 11.
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(4 / 11)


def test_eleven_point_rule_counts_a_recall_of_exactly_three_tenths():
    # Recall 3/10 reaches t = 0, 0.1, 0.2 and 0.3: 4 / 11 (the devkit's Python ports, stepping
    # with np.arange(0, 1.1, 0.1), miss 0.3 and give 3 / 11).
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), use_07_metric=True) == pytest.approx(4 / 11)


def test_all_point_rule_by_hand():
    recall = np.array([0.25, 0.25, 0.5, 0.75])
    precision = np.array([1.0, 0.5, 2 / 3, 0.75])
    # With sentinels: recall [0, .25, .25, .5, .75, 1], precision [0, 1, .5, 2/3, .75, 0];
    # made non-increasing from the right: [1, 1, .75, .75, .75, 0]. Recall steps:
    # 0 -> .25 at 1, .25 -> .5 at .75, .5 -> .75 at .75, .75 -> 1 at 0:
    # .25 * 1 + .25 * .75 + .25 * .75 = 0.625 (without the envelope it would be 0.6041...).
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.625)


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_empty_curve_has_zero_ap(use_07_metric):
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=use_07_metric) == 0.0


def test_mismatched_curve_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        voc_ap(np.zeros(3), np.zeros(2), use_07_metric=False)


def _hand_case():
    """Two images, classes 7 and 2; the expected values are worked out in the test below."""
    image0 = _image(
        preds=[
            ([0, 0, 10, 10], 0.9, 7),  # IoU 1 with A: true positive
            ([1, 0, 11, 10], 0.8, 7),  # IoU 90 / 110 with A, already taken: duplicate, FP
            ([20, 0, 30, 10], 0.6, 2),  # no class-2 box in this image: FP
        ],
        gts=[([0, 0, 10, 10], 7), ([20, 0, 30, 10], 7)],  # A, B (B is never found)
    )
    image1 = _image(
        preds=[
            ([50, 50, 60, 60], 0.95, 2),  # IoU 1 with D: true positive
            ([0, 0, 10, 20], 0.7, 7),  # IoU 100 / 200 = 0.5 with C, not above 0.5: FP
            ([0, 0, 10, 10], 0.5, 7),  # IoU 1 with C: true positive
        ],
        gts=[([0, 0, 10, 10], 7), ([50, 50, 60, 60], 2), ([100, 100, 110, 110], 7)],  # C, D, E
    )
    return [image0, image1]


def test_end_to_end_by_hand():
    result = _evaluate(_hand_case())
    # Class 7, by score: .9 TP, .8 FP, .7 FP, .5 TP; 4 boxes (A, B, C, E).
    np.testing.assert_allclose(result.precision[7], [1, 1 / 2, 1 / 3, 2 / 4])
    np.testing.assert_allclose(result.recall[7], [1 / 4, 1 / 4, 1 / 4, 2 / 4])
    # All-point: envelope 1 up to recall 1/4, then 1/2 up to 1/2: 1/4 * 1 + 1/4 * 1/2.
    assert result.ap_per_class[7] == pytest.approx(0.375)
    # Class 2, by score: .95 TP, .6 FP; 1 box: precision [1, 1/2], recall [1, 1], AP 1.
    np.testing.assert_allclose(result.precision[2], [1, 0.5])
    np.testing.assert_allclose(result.recall[2], [1, 1])
    assert result.ap_per_class[2] == pytest.approx(1.0)
    assert result.map == pytest.approx((0.375 + 1) / 2)


def test_end_to_end_eleven_point_by_hand():
    result = _evaluate(_hand_case(), use_07_metric=True)
    # Class 7: t = 0, .1, .2 reach precision 1; t = .3, .4, .5 only recall 1/2, precision 1/2.
    assert result.ap_per_class[7] == pytest.approx((3 * 1 + 3 * 0.5) / 11)
    assert result.ap_per_class[2] == pytest.approx(1.0)
    assert result.map == pytest.approx((4.5 / 11 + 1) / 2)


def test_iou_threshold_is_strict_and_configurable():
    looser = _evaluate(_hand_case(), iou_threshold=0.45)
    # The .7 detection (IoU exactly 0.5 with C) is now a true positive and the .5 one a
    # duplicate: class 7 precision [1, 1/2, 2/3, 2/4].
    np.testing.assert_allclose(looser.precision[7], [1, 1 / 2, 2 / 3, 2 / 4])


def test_difficult_boxes_neither_help_nor_hurt():
    base = _hand_case()
    difficult_box = ([200, 200, 220, 220], 7, True)
    detection = ([200, 200, 220, 221], 0.85, 7)
    found = _image(preds=[detection], gts=[difficult_box])
    missed = _image(gts=[difficult_box])
    reference = _evaluate(base)
    for extra in (found, missed):
        result = _evaluate([*base, extra])
        assert result.ap_per_class == reference.ap_per_class
        for label in reference.precision:
            np.testing.assert_array_equal(result.precision[label], reference.precision[label])
            np.testing.assert_array_equal(result.recall[label], reference.recall[label])
    # Marked not difficult, the same box and detection do change the result.
    assert _evaluate([*base, _image([detection], [difficult_box[:2]])]).map != reference.map


def test_a_duplicate_does_not_fall_back_to_another_box():
    # Both detections overlap A best (IoU 1 and 0.9) and B above 0.5 too; the devkit compares a
    # detection with its best box only, so the second is a duplicate of A and B stays missed.
    image = _image(
        preds=[([0, 0, 10, 10], 0.9, 0), ([0, 0, 10, 9], 0.8, 0)],
        gts=[([0, 0, 10, 10], 0), ([0, 0, 10, 8], 0)],
    )
    result = _evaluate([image])
    np.testing.assert_allclose(result.precision[0], [1, 0.5])
    np.testing.assert_allclose(result.recall[0], [0.5, 0.5])
    assert result.map == pytest.approx(0.5)


def test_ties_keep_input_order():
    # Same score: a miss listed first ranks first (precision [0, 1/2], AP 1 * 1/2); listed
    # second, the hit ranks first (precision [1, 1/2], AP 1).
    hit, miss = ([0, 0, 10, 10], 0.5, 0), ([50, 50, 60, 60], 0.5, 0)
    gts = [([0, 0, 10, 10], 0)]
    assert _evaluate([_image([miss, hit], gts)]).map == pytest.approx(0.5)
    assert _evaluate([_image([hit, miss], gts)]).map == pytest.approx(1.0)


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    image = _image(
        preds=[([0, 0, 10, 10], 0.9, 0), ([30, 30, 40, 40], 0.8, 5)],
        gts=[([0, 0, 10, 10], 0), ([60, 60, 70, 70], 9, True)],
    )
    result = _evaluate([image])
    assert set(result.ap_per_class) == {0, 5, 9}
    assert np.isnan(result.ap_per_class[5]) and np.isnan(result.ap_per_class[9])
    np.testing.assert_array_equal(result.precision[5], [0.0])
    assert np.isnan(result.recall[5]).all()
    assert result.map == 1.0


def test_empty_inputs():
    assert np.isnan(_evaluate([_image()]).map)
    nothing = evaluate_voc([], [], [], [], [], [])
    assert np.isnan(nothing.map) and nothing.ap_per_class == {}
    missed = _evaluate([_image(gts=[([0, 0, 1, 1], 3)])])
    assert missed.ap_per_class == {3: 0.0} and missed.precision[3].shape == (0,)


def test_bad_input_names_the_image_and_field():
    good = _image([([0, 0, 1, 1], 0.5, 0)], [([0, 0, 1, 1], 0)])
    with pytest.raises(ConfigError, match="image 0: field 'pred_boxes'"):
        _evaluate([(np.zeros((1, 3)), *good[1:])])
    with pytest.raises(ConfigError, match="image 0: field 'gt_difficult'"):
        _evaluate([(*good[:5], np.zeros(2, bool))])
    with pytest.raises(ConfigError, match="field 'gt_labels'"):
        evaluate_voc(*([g] for g in good[:4]), [], [good[5]])
    with pytest.raises(ConfigError, match="iou_threshold"):
        _evaluate([good], iou_threshold=1.5)


def _devkit_ap(images, iou_threshold, use_07_metric):
    """The devkit's per-detection loop (voc_eval), class by class, as a reference."""
    labels = set()
    for image in images:
        labels |= set(image[2].tolist()) | set(image[4].tolist())
    aps = {}
    for label in sorted(labels):
        taken = [np.zeros(len(image[4]), bool) for image in images]
        dets = [
            (score, i, box)
            for i, image in enumerate(images)
            for box, score, lab in zip(image[0], image[1], image[2], strict=True)
            if lab == label
        ]
        dets.sort(key=lambda d: -d[0])  # Python's sort is stable, as evaluate_voc's
        npos = sum(int(((im[4] == label) & ~im[5]).sum()) for im in images)
        tp, fp = [], []
        for _, i, box in dets:
            gt_boxes, gt_labels, hard = images[i][3], images[i][4], images[i][5]
            same = np.flatnonzero(gt_labels == label)
            best, ovmax = -1, -np.inf
            for j in same:
                g = gt_boxes[j]
                iw = max(min(box[2], g[2]) - max(box[0], g[0]), 0)
                ih = max(min(box[3], g[3]) - max(box[1], g[1]), 0)
                union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1])
                iou = iw * ih / (union - iw * ih)
                if iou > ovmax:
                    best, ovmax = j, iou
            if ovmax > iou_threshold:
                if not hard[best]:
                    tp.append(not taken[i][best])
                    fp.append(taken[i][best])
                    taken[i][best] = True
            else:
                tp.append(False)
                fp.append(True)
        if npos == 0:
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec, prec = ctp / npos, ctp / np.maximum(ctp + cfp, 1)
        aps[label] = voc_ap(rec, prec, use_07_metric=use_07_metric)
    return aps


def _random_images(rng, count):
    images = []
    for _ in range(count):
        n_gt, n_pred = rng.integers(0, 6), rng.integers(0, 9)
        gt = rng.uniform(0, 40, (n_gt, 2))
        gt = np.hstack([gt, gt + rng.uniform(5, 20, (n_gt, 2))])
        source = (
            gt[rng.integers(0, max(n_gt, 1), n_pred)] if n_gt else rng.uniform(0, 40, (n_pred, 4))
        )
        pred = source + rng.normal(0, 3, (n_pred, 4))
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        images.append(
            (
                pred,
                rng.uniform(0, 1, n_pred),
                rng.integers(0, 3, n_pred),
                gt,
                rng.integers(0, 3, n_gt),
                rng.uniform(size=n_gt) < 0.2,
            )
        )
    return images


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("use_07_metric", [True, False])
def test_matches_the_devkit_loop_on_random_data(seed, use_07_metric):
    images = _random_images(np.random.default_rng(seed), count=6)
    expected = _devkit_ap(images, 0.5, use_07_metric)
    result = _evaluate(images, use_07_metric=use_07_metric)
    assert {k: v for k, v in result.ap_per_class.items() if not np.isnan(v)} == pytest.approx(
        expected
    )


def test_all_point_ap_against_sklearn():
    """sklearn's AP is sum (R_n - R_{n-1}) P_n without VOC's envelope of precision.

    With one class and every box found exactly once somewhere in the ranking (no ties),
    sklearn's labels are exactly VOC's TP/FP flags and both reach recall 1. The two then
    agree when the precision at the hits never rises down the ranking; otherwise VOC's
    envelope makes its AP strictly larger. Random rankings give both cases.
    """
    outcomes = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n_gt, n_fp = rng.integers(1, 6), rng.integers(0, 6)
        corners = np.repeat(np.arange(n_gt)[:, None] * 100.0, 2, axis=1)
        gts = np.hstack([corners, corners + 10])
        false_alarms = np.full((n_fp, 4), 1000.0) + np.array([0, 0, 10, 10])
        scores = rng.permutation(n_gt + n_fp) / (n_gt + n_fp) + 0.01  # distinct
        image = (
            np.vstack([gts + 0.5, false_alarms]),
            scores,
            np.zeros(n_gt + n_fp, int),
            gts,
            np.zeros(n_gt, int),
            np.zeros(n_gt, bool),
        )
        voc = _evaluate([image]).ap_per_class[0]
        is_hit = np.r_[np.ones(n_gt), np.zeros(n_fp)]
        reference = average_precision_score(is_hit, scores)
        ranked_hits = is_hit[np.argsort(-scores)]
        precision_at_hits = (np.cumsum(ranked_hits) / np.arange(1, n_gt + n_fp + 1))[
            ranked_hits == 1
        ]
        if np.all(np.diff(precision_at_hits) <= 0):
            assert voc == pytest.approx(reference)
            outcomes.add("equal")
        else:
            assert voc > reference + 1e-9
            outcomes.add("envelope")
    assert outcomes == {"equal", "envelope"}
