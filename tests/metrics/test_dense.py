"""Tests for visionkit.metrics.dense, on hand-worked depth and flow values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visionkit.errors import ConfigError, DataError
from visionkit.metrics.dense import DepthMetrics, FlowMetrics

PERFECT = {
    "abs_rel": 0.0,
    "sq_rel": 0.0,
    "rmse": 0.0,
    "rmse_log": 0.0,
    "delta1": 1.0,
    "delta2": 1.0,
    "delta3": 1.0,
}


def depth(metrics: DepthMetrics, pred, target, valid=None) -> dict[str, float]:
    metrics.update(pred, target, valid)
    return metrics.compute()


def random_depth(seed: int, shape=(3, 12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 80.0, shape)


def test_hand_worked_errors() -> None:
    target = np.array([[[1.0, 2.0], [4.0, 8.0]]])
    result = depth(DepthMetrics(), 1.1 * target, target)
    assert result["abs_rel"] == pytest.approx(0.1)
    assert result["sq_rel"] == pytest.approx(0.01 * 3.75)  # mean (0.1 g)^2 / g = 0.01 mean g
    assert result["rmse"] == pytest.approx(0.1 * math.sqrt(85 / 4))  # 0.1 sqrt(mean g^2)
    assert result["rmse_log"] == pytest.approx(math.log(1.1))
    assert (result["delta1"], result["delta2"], result["delta3"]) == (1.0, 1.0, 1.0)


def test_delta_thresholds_use_the_larger_ratio() -> None:
    target = np.array([[[1.0, 2.0], [4.0, 8.0]]])
    factors = np.array([[[1.1, 1 / 1.3], [1.6, 2.0]]])  # ratios 1.1, 1.3, 1.6, 2.0
    result = depth(DepthMetrics(), factors * target, target)
    # 1.25 = 1.25, 1.25^2 = 1.5625, 1.25^3 = 1.953125
    assert (result["delta1"], result["delta2"], result["delta3"]) == (0.25, 0.5, 0.75)
    assert result["abs_rel"] == pytest.approx((0.1 + (1 - 1 / 1.3) + 0.6 + 1.0) / 4)


def test_median_alignment_undoes_a_scale() -> None:
    target = random_depth(0)
    result = depth(
        DepthMetrics(alignment="median"), target * np.array([2.0, 0.1, 7.0])[:, None, None], target
    )
    assert result == pytest.approx(PERFECT, abs=1e-12)
    assert depth(DepthMetrics(), 2 * target, target)["abs_rel"] == pytest.approx(1.0)


def test_least_squares_recovers_scale_and_shift() -> None:
    target = random_depth(1)
    result = depth(DepthMetrics(alignment="least_squares"), (target - 1.0) / 3.0, target)
    assert result == pytest.approx(PERFECT, abs=1e-9)
    median_only = depth(DepthMetrics(alignment="median"), (target - 1.0) / 3.0, target)
    assert median_only["abs_rel"] > 0.01


def test_least_squares_in_disparity_recovers_inverse_depth() -> None:
    target = random_depth(2)
    metrics = DepthMetrics(alignment="least_squares_disparity", max_depth=100.0)
    assert depth(metrics, 2.0 / target + 0.5, target) == pytest.approx(PERFECT, abs=1e-9)
    in_depth = depth(DepthMetrics(alignment="least_squares"), 2.0 / target + 0.5, target)
    assert in_depth["abs_rel"] > 0.1


def test_disparity_alignment_caps_depth_at_max_depth() -> None:
    # Centred p = -1, 0, 1 against 1 / g = 1, 1/2, 1/8: s = (1/8 - 1) / 2 = -7/16 and
    # t = 13/24, so the disparities are 47/48, 26/48 and 5/48; the last is below
    # 1 / max_depth, so that depth is held at max_depth = 8.5 instead of 9.6.
    target = np.array([[[1.0, 2.0, 8.0, 0.0]]])
    pred = np.array([[[-1.0, 0.0, 1.0, 7.0]]])  # the last pixel is not valid
    metrics = DepthMetrics(alignment="least_squares_disparity", max_depth=8.5)
    result = depth(metrics, pred, target)
    assert result["abs_rel"] == pytest.approx((1 / 47 + 1 / 13 + 1 / 16) / 3, rel=1e-12)


def test_invalid_pixels_are_left_out() -> None:
    target = np.array([[[2.0, 0.0, -1.0, np.nan], [np.inf, 50.0, 3.0, 4.0]]])
    pred = np.array([[[2.0, np.nan, 9.0, 9.0], [9.0, 9.0, 9.0, 4.0]]])
    valid = np.array([[[True, True, True, True], [True, True, False, True]]])
    result = depth(DepthMetrics(max_depth=20.0), pred, target, valid)
    assert result == pytest.approx(PERFECT)
    pred[0, 1, 3] = np.nan
    with pytest.raises(DataError, match="image 1: field 'pred'"):
        depth(DepthMetrics(), np.concatenate([target, pred]), np.concatenate([target, target]))


def test_predictions_are_clipped_to_the_depth_range() -> None:
    target = np.array([[[1.0, 5.0]]])
    result = depth(DepthMetrics(min_depth=0.5, max_depth=10.0), np.array([[[0.0, 100.0]]]), target)
    assert result["abs_rel"] == pytest.approx((0.5 / 1 + 5 / 5) / 2)  # preds 0.5 and 10


def test_pooled_and_per_image_averages() -> None:
    # Image 0: one valid pixel, 4 predicted as 6; image 1: nine exact pixels.
    target = np.full((2, 3, 3), 4.0)
    target[0] = 0.0
    target[0, 0, 0] = 4.0
    pred = np.stack([np.full((3, 3), 6.0), np.full((3, 3), 4.0)])
    pooled = depth(DepthMetrics(), pred, target)
    assert pooled["abs_rel"] == pytest.approx(0.5 / 10)
    assert pooled["rmse"] == pytest.approx(math.sqrt(4 / 10))
    assert pooled["delta1"] == pytest.approx(9 / 10)
    per_image = depth(DepthMetrics(per_image=True), pred, target)
    assert per_image["abs_rel"] == pytest.approx(0.5 / 2)
    assert per_image["rmse"] == pytest.approx(2 / 2)
    assert per_image["delta1"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("per_image", [False, True])
def test_depth_streaming_equals_one_shot(per_image: bool) -> None:
    target = random_depth(3, shape=(6, 10, 12))
    target[1] = 0.0  # an image without a valid pixel
    pred = target * np.random.default_rng(4).uniform(0.7, 1.4, target.shape)
    streamed = DepthMetrics(alignment="median", per_image=per_image)
    for index in range(len(target)):
        streamed.update(torch.from_numpy(pred[index : index + 1]), target[index : index + 1])
    expected = depth(DepthMetrics(alignment="median", per_image=per_image), pred, target)
    assert streamed.compute() == pytest.approx(expected, rel=1e-12)
    assert 0 < expected["abs_rel"] < 0.3
    streamed.reset()
    assert all(math.isnan(v) for v in streamed.compute().values())


def test_depth_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="alignment"):
        DepthMetrics(alignment="mean")
    with pytest.raises(ConfigError, match="max_depth"):
        DepthMetrics(alignment="least_squares_disparity")
    with pytest.raises(ConfigError, match="min_depth"):
        DepthMetrics(min_depth=0.0)
    with pytest.raises(ConfigError, match="does not match"):
        DepthMetrics().update(np.ones((1, 2, 3)), np.ones((1, 3, 2)))
    with pytest.raises(ConfigError, match="field 'valid'"):
        DepthMetrics().update(np.ones((1, 2, 3)), np.ones((1, 2, 3)), np.ones((2, 3), bool))
    with pytest.raises(DataError, match="positive median"):
        DepthMetrics(alignment="median").update(-np.ones((1, 2, 3)), np.ones((1, 2, 3)))


def flow_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Six pixels of one image: four valid ones with hand-worked errors, two left out."""
    target = np.array([[0, 0], [60, 80], [60, 80], [3, 4], [np.nan, 0], [1, 1]], float)
    error = np.array([[3, 4], [4, 3], [0, 2], [0, 0], [0, 0], [50, 50]], float)
    pred = target + error
    pred[4] = np.nan  # unknown target: ignored
    valid = np.array([True, True, True, True, True, False])
    return pred.reshape(1, 2, 3, 2), target.reshape(1, 2, 3, 2), valid.reshape(1, 2, 3)


def test_hand_worked_flow_errors() -> None:
    pred, target, valid = flow_case()
    metrics = FlowMetrics()
    metrics.update(pred, target, valid)
    result = metrics.compute()
    # EPEs 5, 5, 2, 0. Only the first is an outlier: the second is 5 px against a 100 px
    # flow, not more than 5 % of it.
    assert result == pytest.approx(
        {"epe": 3.0, "fl_all": 0.25, "epe_1px": 0.25, "epe_3px": 0.5, "epe_5px": 0.5}
    )


def test_flow_per_image_and_streaming() -> None:
    pred, target, valid = flow_case()
    exact = np.zeros((1, 2, 3, 2))
    batch = (np.concatenate([pred, exact]), np.concatenate([target, exact]))
    masks = np.concatenate([valid, np.ones((1, 2, 3), bool)])
    per_image = FlowMetrics(per_image=True)
    per_image.update(*batch, masks)
    assert per_image.compute()["epe"] == pytest.approx((3.0 + 0.0) / 2)
    pooled, streamed = FlowMetrics(), FlowMetrics()
    pooled.update(*batch, masks)
    assert pooled.compute()["epe"] == pytest.approx(12.0 / 10)
    for index in range(2):
        streamed.update(
            batch[0][index : index + 1], batch[1][index : index + 1], masks[index : index + 1]
        )
    assert streamed.compute() == pooled.compute()


def test_flow_bad_input() -> None:
    with pytest.raises(ConfigError, match=r"\[B, H, W, 2\]"):
        FlowMetrics().update(np.zeros((1, 2, 5, 5)), np.zeros((1, 2, 5, 5)))
    with pytest.raises(ConfigError, match="4 axes"):
        FlowMetrics().update(np.zeros((5, 5, 2)), np.zeros((5, 5, 2)))
    pred, target, valid = flow_case()
    pred[0, 0, 1, 0] = np.inf
    with pytest.raises(DataError, match="image 0: field 'pred'"):
        FlowMetrics().update(pred, target, valid)
