"""Tests for visionkit.data.synthetic.evaluation: random COCO ground truth and results."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from visionkit.data.synthetic.evaluation import make_evaluation_set
from visionkit.errors import ConfigError


def test_pure_function_of_the_arguments() -> None:
    first = make_evaluation_set(seed=3, num_images=40)
    assert json.dumps(first) == json.dumps(make_evaluation_set(seed=3, num_images=40))
    assert json.dumps(first) != json.dumps(make_evaluation_set(seed=4, num_images=40))


def test_covers_every_branch_of_the_matching_rules() -> None:
    gt, results = make_evaluation_set(seed=0, num_images=400)
    anns = gt["annotations"]
    area = np.array([a["area"] for a in anns])
    box_area = np.array([a["bbox"][2] * a["bbox"][3] for a in anns])
    assert (area < box_area).all()  # the area field, not the box, decides the area range
    assert (area < 32**2).any() and ((area > 32**2) & (area < 96**2)).any() and (area > 96**2).any()
    assert 0 < sum(a["iscrowd"] for a in anns) < len(anns)
    image_ids = [im["id"] for im in gt["images"]]
    assert image_ids != sorted(image_ids) and len(set(image_ids)) == len(image_ids)
    assert set(image_ids) - {a["image_id"] for a in anns}  # images without ground truth
    assert set(image_ids) - {r["image_id"] for r in results}  # images without predictions
    categories = {c["id"] for c in gt["categories"]}
    mentioned = {a["category_id"] for a in anns} | {r["category_id"] for r in results}
    assert categories - mentioned  # categories with neither
    assert {r["category_id"] for r in results} - {a["category_id"] for a in anns}
    groups = np.unique(
        [(r["image_id"], r["category_id"]) for r in results], axis=0, return_counts=True
    )
    assert groups[1].max() > 100  # maxDets truncation is exercised
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores)  # tied scores
    assert abs(len(results) / len(image_ids) - 25) < 5 and abs(len(anns) / len(image_ids) - 7) < 1.5


def test_loads_in_pycocotools_with_segmentations() -> None:
    gt, results = make_evaluation_set(seed=1, num_images=30, num_categories=5, segm=True)
    kinds = {
        "polygon" if isinstance(s, list) else type(s["counts"]).__name__
        for s in (a["segmentation"] for a in gt["annotations"])
    }
    assert kinds == {"polygon", "str", "list"}  # polygons, compressed and uncompressed RLE
    assert all(isinstance(r["segmentation"]["counts"], str) for r in results)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        loaded = coco.loadRes(results)
    assert len(loaded.anns) == len(results)
    masks = [coco.annToMask(a) for a in gt["annotations"][:20]]
    np.testing.assert_allclose(
        [m.sum() for m in masks], [a["area"] for a in gt["annotations"][:20]]
    )


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="num_images"):
        make_evaluation_set(seed=0, num_images=0)
    with pytest.raises(ConfigError, match="fractions"):
        make_evaluation_set(seed=0, num_images=3, crowd_fraction=1.5)
