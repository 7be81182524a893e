"""Tests for visionkit.ops.masks, held to pycocotools (the COCO format's own reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visionkit.errors import ConfigError
from visionkit.ops.masks import (
    mask_iou,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_rle,
    rle_area,
    rle_to_bbox,
    rle_to_mask,
    segmentation_to_mask,
    segmentation_to_rle,
)

HEIGHT, WIDTH = 48, 64

POLYGONS = {
    1: [[10.0, 10.0, 30.0, 10.0, 30.0, 25.0, 10.0, 25.0]],  # rectangle
    2: [[5.0, 30.0, 25.0, 30.0, 25.0, 45.0, 15.0, 37.5, 5.0, 45.0]],  # concave (notched)
    3: [[50.0, 0.0, 64.0, 0.0, 64.0, 20.0, 55.5, 12.3]],  # touches the top and right border
    4: [[35.0, 30.0, 45.0, 30.0, 40.0, 40.0], [50.0, 35.0, 60.0, 35.0, 60.0, 44.0]],  # two parts
}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO crowd RLE: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    counts = runs if flat[0] == 0 else [0, *runs]
    return {"size": list(mask.shape), "counts": counts}


def random_masks(n: int, seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``[n, H, W]`` bool masks made of rectangles, so pairs overlap partly."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, height, width), bool)
    for mask in masks:
        for _ in range(2):
            y, x = rng.integers(0, height - 5), rng.integers(0, width - 5)
            mask[y : y + rng.integers(3, 25), x : x + rng.integers(3, 30)] = True
    return masks


def disk(radius: float, cy: float, cx: float) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def coco_with(segmentations: dict[int, object], iscrowd: int = 0) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": HEIGHT, "width": WIDTH, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i, "image_id": 1, "category_id": 1, "segmentation": s, "iscrowd": iscrowd}
            for i, s in segmentations.items()
        ],
    }
    coco.createIndex()
    return coco


@pytest.mark.parametrize("ann_id", sorted(POLYGONS))
def test_polygons_rasterise_like_pycocotools(ann_id: int) -> None:
    expected = coco_with(POLYGONS).annToMask(coco_with(POLYGONS).anns[ann_id]).astype(bool)
    assert expected.any()
    mask = rle_to_mask(polygons_to_rle(POLYGONS[ann_id], HEIGHT, WIDTH))
    assert mask.dtype == bool and mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(segmentation_to_mask(POLYGONS[ann_id], HEIGHT, WIDTH), expected)


def test_border_polygon_reaches_the_border() -> None:
    mask = segmentation_to_mask(POLYGONS[3], HEIGHT, WIDTH)
    assert mask[0].any() and mask[:, -1].any()


def test_uncompressed_crowd_rle_becomes_compressed() -> None:
    mask = random_masks(1, seed=0)[0]
    crowd = uncompressed_rle(mask)
    rle = segmentation_to_rle(crowd, HEIGHT, WIDTH)
    assert isinstance(rle["counts"], str) and rle["size"] == [HEIGHT, WIDTH]
    assert (
        rle["counts"]
        == mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    )
    coco = coco_with({1: crowd}, iscrowd=1)
    np.testing.assert_array_equal(rle_to_mask(rle), coco.annToMask(coco.anns[1]).astype(bool))


def test_compressed_rle_with_bytes_counts_becomes_json_ready() -> None:
    encoded = mask_utils.encode(np.asfortranarray(random_masks(1, seed=1)[0].astype(np.uint8)))
    rle = segmentation_to_rle(encoded, HEIGHT, WIDTH)
    assert rle == {"size": [HEIGHT, WIDTH], "counts": encoded["counts"].decode()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_rle_round_trip_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((HEIGHT, WIDTH)) < 0.3
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_rle_area_and_bbox_match_pycocotools() -> None:
    for mask in random_masks(5, seed=3):
        rle = mask_to_rle(mask)
        binary = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle_area(rle) == float(mask_utils.area(binary)) == float(mask.sum())
        x, y, w, h = mask_utils.toBbox(binary).tolist()
        assert rle_to_bbox(rle) == (x, y, x + w, y + h)


def test_rle_to_bbox_by_hand() -> None:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[5:9, 10:20] = True  # rows 5..8, columns 10..19: pixel edges 10..20 and 5..9
    assert rle_to_bbox(mask_to_rle(mask)) == (10.0, 5.0, 20.0, 9.0)


@pytest.mark.parametrize(
    "mask",
    [
        disk(15.0, 24.0, 30.0),
        disk(3.0, 10.0, 10.0),
        np.pad(np.ones((20, 30), bool), ((10, 18), (12, 22))),
        np.tri(HEIGHT, WIDTH, dtype=bool)[:, ::-1],
    ],
    ids=["disk", "small-disk", "rectangle", "triangle-touching-border"],
)
def test_polygons_traced_from_a_mask_recover_it(mask: np.ndarray) -> None:
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 1 and len(polygons[0]) % 2 == 0
    recovered = rle_to_mask(polygons_to_rle(polygons, HEIGHT, WIDTH))
    assert mask_iou(recovered[None], mask[None])[0, 0] > 0.95
    np.testing.assert_array_equal(recovered, mask)  # polygons follow the pixel edges exactly


def test_mask_to_polygons_rectangle_by_hand() -> None:
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True  # rows 1-2, columns 2-4: pixel edges x 2..5, y 1..3
    (polygon,) = mask_to_polygons(mask)
    corners = sorted(zip(polygon[0::2], polygon[1::2], strict=True))
    assert corners == [(2.0, 1.0), (2.0, 3.0), (5.0, 1.0), (5.0, 3.0)]


def test_mask_to_polygons_orders_parts_and_drops_specks() -> None:
    mask = disk(5.0, 10.0, 10.0) | disk(12.0, 30.0, 45.0)
    mask[45, 2] = True  # a one-pixel speck has zero contour area
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    assert min(polygons[0][0::2]) > 30  # the larger disk comes first


def test_mask_iou_matches_pycocotools() -> None:
    a, b = random_masks(6, seed=4), random_masks(5, seed=5)
    a[0] = False  # an empty mask: IoU 0 with everything
    rles_a = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in a]
    rles_b = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in b]
    expected = mask_utils.iou(rles_a, rles_b, [0] * len(rles_b))
    assert (expected > 0).any() and (expected < 1).any()
    result = mask_iou(a, b)
    assert result.shape == (6, 5) and result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-9)
    torch_result = mask_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert torch_result.dtype == torch.float32
    np.testing.assert_allclose(torch_result.numpy(), expected, rtol=0, atol=1e-6)


def test_mask_iou_by_hand_and_empty() -> None:
    a = np.zeros((2, 2, 4), bool)
    a[0, :, :2] = True
    b = np.zeros((1, 2, 4), bool)
    b[0, :, 1:3] = True
    np.testing.assert_allclose(mask_iou(a, b), [[1 / 3], [0.0]], rtol=1e-12)
    assert mask_iou(np.zeros((2, 2, 4), bool), np.zeros((2, 2, 4), bool)).tolist() == [[0, 0]] * 2
    assert mask_iou(a[:0], b).shape == (0, 1)
    assert mask_iou(torch.from_numpy(a), torch.zeros((0, 2, 4), dtype=torch.bool)).shape == (2, 0)


def test_mask_iou_rejects_bad_input() -> None:
    masks = np.zeros((1, 4, 4), bool)
    with pytest.raises(ConfigError, match=r"field 'b': masks must have shape \[N, H, W\]"):
        mask_iou(masks, masks[0])
    with pytest.raises(ConfigError, match=r"differ in size: \[4, 4\] and \[4, 5\]"):
        mask_iou(masks, np.zeros((1, 4, 5), bool))
    with pytest.raises(ConfigError, match="numpy arrays or both torch tensors"):
        mask_iou(masks, torch.from_numpy(masks))
