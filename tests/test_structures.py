"""Tests for visionkit.structures.Detections: validation, indexing and format round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from visionkit.errors import ConfigError, DataError, VisionKitError
from visionkit.structures import Detections

H, W = 20, 30


def make_detections(masks: bool = True, track_ids: bool = True) -> Detections:
    """Three detections with distinct values in every field."""
    m = torch.zeros((3, H, W), dtype=torch.bool)
    m[0, 2:6, 1:5] = True
    m[1, 10:20, 10:30] = True
    m[1, 15:20, 25:30] = False  # mask area 175, box area 200
    m[2, 0:1, 0:3] = True
    return Detections(
        boxes=[[1.0, 2.0, 5.0, 6.0], [10.0, 10.0, 30.0, 20.0], [0.0, 0.0, 3.0, 1.0]],
        scores=[0.9, 0.5, 0.7],
        labels=[0, 2, 1],
        masks=m if masks else None,
        track_ids=[7, 8, 9] if track_ids else None,
    )


def assert_same(a: Detections, b: Detections) -> None:
    for name in ("boxes", "scores", "labels", "masks", "track_ids"):
        got, want = getattr(a, name), getattr(b, name)
        assert (got is None) == (want is None), name
        if want is not None:
            assert got.dtype == want.dtype, name
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)


def test_construction_coerces_dtypes() -> None:
    dets = Detections(np.zeros((2, 4)), np.ones(2), np.array([1.0, 2.0]), track_ids=[1, 2])
    assert (dets.boxes.dtype, dets.scores.dtype) == (torch.float32, torch.float32)
    assert (dets.labels.dtype, dets.track_ids.dtype) == (torch.int64, torch.int64)
    assert dets.labels.tolist() == [1, 2]
    assert len(dets) == 2 and dets.masks is None
    masks = Detections([[0.0, 0, 1, 1]], [1.0], [0], masks=np.full((1, 2, 2), 255, np.uint8)).masks
    assert masks.dtype == torch.bool and masks.all()
    assert repr(make_detections()) == (
        "Detections(n=3, masks=[3, 20, 30], track_ids=[3], device=cpu)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": torch.zeros((3, 5))}, r"field 'boxes': must have shape \[N, 4\], got \[3, 5\]"),
        ({"scores": torch.zeros(2)}, r"field 'scores': must have shape \[3\], got \[2\]"),
        ({"labels": torch.zeros((3, 1))}, r"field 'labels': must have shape \[3\], got \[3, 1\]"),
        ({"masks": torch.zeros((2, H, W), dtype=torch.bool)}, r"must have shape \[3, H, W\]"),
        ({"masks": torch.rand((3, H, W))}, "masks must be bool or 0/1 integers"),
        ({"track_ids": [1]}, r"field 'track_ids': must have shape \[3\], got \[1\]"),
    ],
)
def test_construction_rejects_bad_shapes(kwargs: dict, message: str) -> None:
    fields = {
        "boxes": torch.zeros((3, 4)),
        "scores": torch.zeros(3),
        "labels": torch.zeros(3),
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message) as info:
        Detections(**fields)
    assert isinstance(info.value, VisionKitError)
    assert str(info.value).startswith("Detections: field")


def test_int_index_keeps_a_length_one_detections() -> None:
    dets = make_detections()
    one = dets[1]
    assert isinstance(one, Detections) and len(one) == 1
    assert one.boxes.tolist() == [[10.0, 10.0, 30.0, 20.0]]
    assert one.labels.tolist() == [2] and one.track_ids.tolist() == [8]
    assert one.masks.shape == (1, H, W) and torch.equal(one.masks[0], dets.masks[1])
    assert_same(dets[-1], dets[2])
    assert_same(dets[torch.tensor(2)], dets[2])
    assert_same(dets[np.int64(0)], dets[0])
    with pytest.raises(IndexError, match="index 3 is out of range for 3 detections"):
        dets[3]
    with pytest.raises(IndexError):
        dets[-4]


def test_slice_mask_and_index_selection() -> None:
    dets = make_detections()
    assert dets[1:].track_ids.tolist() == [8, 9]
    keep = dets.scores > 0.6
    assert_same(dets[keep], dets[[0, 2]])
    assert_same(dets[[True, False, True]], dets[torch.tensor([0, 2])])
    reordered = dets[torch.argsort(dets.scores, descending=True)]
    assert reordered.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert reordered.track_ids.tolist() == [7, 9, 8]
    assert torch.equal(reordered.masks[1], dets.masks[2])
    assert len(dets[[]]) == 0 and dets[[]].masks.shape == (0, H, W)
    assert [d.track_ids.item() for d in dets] == [7, 8, 9]  # iteration yields single rows


def test_to_and_cpu_move_every_field() -> None:
    moved = make_detections().to("meta")
    assert moved.device.type == "meta"
    assert {t.device.type for t in (moved.scores, moved.labels, moved.masks, moved.track_ids)} == {
        "meta"
    }
    assert_same(make_detections().cpu(), make_detections())


def test_empty() -> None:
    empty = Detections.empty()
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.masks is None
    assert (empty.scores.dtype, empty.labels.dtype) == (torch.float32, torch.int64)
    assert Detections.empty(mask_size=(H, W)).masks.shape == (0, H, W)
    assert Detections.empty(device="meta").device.type == "meta"
    assert empty.to_coco(image_id=1) == []
    assert len(Detections.from_coco([], H, W)) == 0


def test_cat() -> None:
    dets = make_detections()
    assert_same(Detections.cat([dets[:1], dets[1:]]), dets)
    assert_same(Detections.cat([Detections.empty(), dets, Detections.empty()]), dets)
    assert len(Detections.cat([])) == 0
    with pytest.raises(ConfigError, match="field 'masks': only some"):
        Detections.cat([dets, make_detections(masks=False)])
    small = Detections([[0.0, 0, 1, 1]], [1.0], [0], torch.ones((1, 4, 4), dtype=bool), [1])
    with pytest.raises(
        ConfigError, match=r"field 'masks': .* differ in size: \[\(4, 4\), \(20, 30\)\]"
    ):
        Detections.cat([dets, small])


def mask_rcnn_output() -> dict[str, torch.Tensor]:
    """What torchvision's Mask R-CNN returns in eval mode for one image."""
    probabilities = torch.zeros((2, 1, H, W))
    probabilities[0, 0, 2:8, 3:9] = 0.9
    probabilities[0, 0, 8, 3:9] = 0.5  # exactly at the threshold: foreground
    probabilities[1, 0, 5:15, 5:25] = 0.6
    probabilities[1, 0, 5, 5:25] = 0.49
    return {
        "boxes": torch.tensor([[3.0, 2.0, 9.0, 9.0], [5.0, 5.0, 25.0, 15.0]]),
        "scores": torch.tensor([0.95, 0.4]),
        "labels": torch.tensor([3, 1]),
        "masks": probabilities,
    }


def test_from_torchvision_thresholds_masks() -> None:
    output = mask_rcnn_output()
    dets = Detections.from_torchvision(output)
    assert dets.masks.dtype == torch.bool and dets.masks.shape == (2, H, W)
    assert torch.equal(dets.masks, output["masks"][:, 0] >= 0.5)
    assert dets.masks.sum(dim=(1, 2)).tolist() == [42, 180]
    assert dets.labels.tolist() == [3, 1] and dets.track_ids is None
    strict = Detections.from_torchvision(output, mask_threshold=0.7)
    assert strict.masks.sum(dim=(1, 2)).tolist() == [36, 0]


def test_torchvision_round_trip_and_targets() -> None:
    dets = make_detections(track_ids=False)
    out = dets.to_torchvision()
    assert set(out) == {"boxes", "scores", "labels", "masks"}
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (3, H, W)
    assert_same(Detections.from_torchvision(out), dets)
    target = Detections.from_torchvision({"boxes": dets.boxes, "labels": dets.labels})
    assert target.scores.tolist() == [1.0, 1.0, 1.0] and target.masks is None
    assert set(make_detections(masks=False).to_torchvision()) == {"boxes", "scores", "labels"}
    with pytest.raises(ConfigError, match="detector output lacks 'labels'"):
        Detections.from_torchvision({"boxes": dets.boxes})


def test_to_coco_by_hand() -> None:
    anns = make_detections(masks=False).to_coco(image_id=5, category_ids=[1, 3, 7])
    assert anns[1] == {
        "image_id": 5,
        "category_id": 7,
        "bbox": [10.0, 10.0, 20.0, 10.0],
        "score": pytest.approx(0.5),
        "area": 200.0,
        "track_id": 8,
    }
    assert [a["category_id"] for a in anns] == [1, 7, 3]
    mapped = make_detections(masks=False).to_coco(5, category_ids={0: 10, 1: 11, 2: 12})
    assert [a["category_id"] for a in mapped] == [10, 12, 11]
    assert [a["category_id"] for a in make_detections().to_coco(5)] == [0, 2, 1]
    with pytest.raises(ConfigError, match=r"labels \[2\] are not in category_ids"):
        make_detections().to_coco(5, category_ids=[1, 3])


def test_to_coco_masks_match_pycocotools() -> None:
    dets = make_detections()
    anns = dets.to_coco(image_id=1, category_ids=[1, 2, 3])
    for ann, mask in zip(anns, dets.masks.numpy(), strict=True):
        decoded = mask_utils.decode(
            {**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}
        )
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert ann["area"] == float(mask.sum())
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "height": H, "width": W}],
        "categories": [{"id": i, "name": str(i)} for i in (1, 2, 3)],
        "annotations": [],
    }
    gt.createIndex()
    # Without a bbox, pycocotools loads the results as segmentations and measures their area.
    results = gt.loadRes([{k: v for k, v in a.items() if k not in ("bbox", "area")} for a in anns])
    assert [results.anns[i + 1]["area"] for i in range(3)] == [a["area"] for a in anns]
    assert [a["area"] for a in anns] == [16.0, 175.0, 3.0]


def test_coco_round_trip() -> None:
    dets = make_detections()
    anns = dets.to_coco(image_id=1, category_ids=[4, 5, 6])
    assert_same(Detections.from_coco(anns, H, W, category_ids=[4, 5, 6]), dets)
    without_size = Detections.from_coco(anns, category_ids={0: 4, 1: 5, 2: 6})
    assert without_size.masks is None
    assert without_size.labels.tolist() == dets.labels.tolist()
    boxes_only = make_detections(masks=False, track_ids=False)
    assert_same(Detections.from_coco(boxes_only.to_coco(image_id=1)), boxes_only)


def test_from_coco_ground_truth_polygons_match_pycocotools() -> None:
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 2,
            "bbox": [2.0, 3.0, 10.0, 6.0],
            "segmentation": [[2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 7.0, 5.0, 2.0, 9.0]],
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 1,
            "bbox": [20.0, 0.0, 10.0, 20.0],
            "segmentation": [[20.0, 0.0, 30.0, 0.0, 30.0, 20.0]],
            "iscrowd": 0,
        },
    ]
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": H, "width": W}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": anns,
    }
    coco.createIndex()
    dets = Detections.from_coco(anns, height=H, width=W)
    assert dets.scores.tolist() == [1.0, 1.0]
    assert dets.labels.tolist() == [2, 1]
    assert dets.boxes.tolist() == [[2.0, 3.0, 12.0, 9.0], [20.0, 0.0, 30.0, 20.0]]
    for mask, ann in zip(dets.masks.numpy(), anns, strict=True):
        np.testing.assert_array_equal(mask, coco.annToMask(ann).astype(bool))


@pytest.mark.parametrize(
    ("anns", "kwargs", "error", "message"),
    [
        ([{"category_id": 1}], {}, DataError, "annotation 0: field 'bbox': missing"),
        ([{"bbox": [0, 0, 1, 1]}], {}, DataError, "annotation 0: field 'category_id': missing"),
        ([{"bbox": [0, 0, 1], "category_id": 1}], {}, DataError, "must be 4 numbers"),
        ([{"bbox": "0 0 1 1", "category_id": 1}], {}, DataError, "must be 4 numbers"),
        (
            [
                {"bbox": [0, 0, 1, 1], "category_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]},
                {"bbox": [0, 0, 1, 1], "category_id": 1},
            ],
            {"height": H, "width": W},
            DataError,
            "annotation 1: field 'segmentation': missing while other annotations have it",
        ),
        ([], {"height": H}, ConfigError, "give both height and width"),
        (
            [{"bbox": [0, 0, 1, 1], "category_id": 9}],
            {"category_ids": [1, 2]},
            ConfigError,
            r"category ids \[9\] are not in category_ids",
        ),
        (
            [
                {
                    "bbox": [0, 0, 1, 1],
                    "category_id": 1,
                    "segmentation": {
                        "size": [4, 4],
                        "counts": mask_utils.encode(np.zeros((4, 4), np.uint8, order="F"))[
                            "counts"
                        ],
                    },
                }
            ],
            {"height": H, "width": W},
            DataError,
            r"decodes to size \[4, 4\], not the image's \[20, 30\]",
        ),
    ],
)
def test_from_coco_rejects_bad_annotations(anns, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        Detections.from_coco(anns, **kwargs)
