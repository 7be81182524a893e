"""export_synthetic: datasets of some classes, with a chosen number of images of each."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.data.synthetic import CATEGORIES, ShortcutConfig, make_shortcut_sample
from visionkit.data.synthetic.export import export_synthetic
from visionkit.errors import ConfigError

SMALL = {"kind": "shapes-shortcut", "format": "folder", "imgsz": 32, "workers": 1}
NAMES = {category.id: category.name for category in CATEGORIES}


def _files(root: Path, split: str) -> dict[str, list[Path]]:
    """Image files of one split of an image folder, by class folder."""
    return {folder.name: sorted(folder.iterdir()) for folder in sorted((root / split).iterdir())}


def test_kept_classes_get_the_asked_count_each_and_their_true_images(tmp_path):
    root = export_synthetic(
        tmp_path, classes=["star", "circle"], per_class=True, train=7, val=3, seed=5, **SMALL
    )
    counts = {
        split: {k: len(v) for k, v in _files(root, split).items()}
        for split in ("train", "val", "test")
    }
    assert counts == {
        "train": {"circle": 7, "star": 7},
        "val": {"circle": 3, "star": 3},
        "test": {"circle": 3, "star": 3},
    }
    # Each file is the generator's sample of the index in its name, filed under its class.
    config = ShortcutConfig(imgsz=32, strength=0.9)
    for name, files in _files(root, "train").items():
        for file in files:
            sample = make_shortcut_sample(5, int(file.stem), config)
            assert NAMES[sample.label] == name
            assert np.array_equal(np.asarray(Image.open(file)), sample.image)


def test_disjoint_classes_share_no_image_and_val_does_not_depend_on_train(tmp_path):
    common = {"per_class": True, "val": 4, "seed": 1, **SMALL}
    source = export_synthetic(tmp_path / "a", classes=["circle", "square"], train=5, **common)
    target = export_synthetic(tmp_path / "b", classes=["hexagon", "cross"], train=9, **common)
    bigger = export_synthetic(tmp_path / "c", classes=["hexagon", "cross"], train=2, **common)

    def stems(root: Path, split: str) -> set[str]:
        return {file.stem for files in _files(root, split).values() for file in files}

    assert not stems(source, "train") & stems(target, "train")
    assert not stems(source, "val") & stems(target, "val")
    assert stems(target, "val") == stems(bigger, "val")
    # The first images of each class are kept: a smaller split is part of a larger one.
    assert stems(bigger, "train") < stems(target, "train")


def test_without_per_class_the_count_is_the_total_of_the_kept_classes(tmp_path):
    root = export_synthetic(
        tmp_path, classes=["triangle", "star", "cross"], train=30, val=2, **SMALL
    )
    train = _files(root, "train")
    assert sum(len(files) for files in train.values()) == 30
    assert set(train) == {"triangle", "star", "cross"}  # all three drawn at random: none empty


def test_balanced_over_every_class_when_no_classes_are_named(tmp_path):
    root = export_synthetic(tmp_path, per_class=True, train=2, val=1, **SMALL)
    assert Counter(len(files) for files in _files(root, "train").values()) == {2: 6}


def test_a_coco_export_lists_only_the_kept_categories_with_their_ids(tmp_path):
    coco = {**SMALL, "format": "coco"}
    export_synthetic(tmp_path, classes=["star"], train=3, val=1, **coco)
    document = json.loads((tmp_path / "train.json").read_text())
    assert [(c["id"], c["name"]) for c in document["categories"]] == [(5, "star")]
    assert {a["category_id"] for a in document["annotations"]} == {5}


def test_without_a_selection_the_images_are_the_first_indices_as_before(tmp_path):
    export_synthetic(tmp_path, train=5, val=1, **{**SMALL, "format": "coco"})
    document = json.loads((tmp_path / "train.json").read_text())
    files = [f"images/train/{index:06d}.png" for index in range(5)]
    assert [image["file_name"] for image in document["images"]] == files
    assert len(document["categories"]) == len(CATEGORIES)


def _coco_objects(root: Path) -> tuple[Counter, list[float]]:
    """Objects per image and every object's box side (square root of its box area)."""
    document = json.loads((root / "train.json").read_text())
    per_image = Counter(a["image_id"] for a in document["annotations"])
    return per_image, [np.sqrt(a["bbox"][2] * a["bbox"][3]) for a in document["annotations"]]


def test_scene_options_set_the_object_count_and_size_of_a_shapes_export(tmp_path):
    shapes = {"kind": "shapes", "format": "coco", "train": 30, "val": 1, "imgsz": 96}
    export_synthetic(tmp_path / "default", workers=1, **shapes)
    options = {"max_objects": 2, "min_size": 0.3}
    export_synthetic(tmp_path / "large", workers=1, scene_options=options, **shapes)
    counts, sides = _coco_objects(tmp_path / "default")
    large_counts, large_sides = _coco_objects(tmp_path / "large")
    assert max(counts.values()) > 2 and max(large_counts.values()) <= 2
    assert min(sides) < 0.3 * 96 / 2 < min(large_sides)  # an occluded object keeps 40 %


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"classes": ["circle", "oval"]}, "classes"),
        ({"classes": []}, "classes"),
        ({"classes": ["star", "star"]}, "classes"),
        ({"classes": "star"}, "classes"),
        ({"kind": "shapes", "format": "coco", "classes": ["star"]}, "classes"),
        ({"kind": "shapes", "format": "coco", "per_class": True}, "per_class"),
        ({"scene_options": {"max_objects": 2}}, "scene_options"),  # a shapes-shortcut export
        ({"kind": "shapes", "format": "coco", "scene_options": {"imgsz": 64}}, "scene_options"),
        ({"kind": "shapes", "format": "coco", "scene_options": {"max_size": 0.9}}, "min_size"),
    ],
)
def test_bad_selections_are_refused_before_anything_is_written(tmp_path, options, field):
    with pytest.raises(ConfigError) as caught:
        export_synthetic(tmp_path / "out", **{**SMALL, "train": 2, "val": 1, **options})
    assert caught.value.field == field
    assert not (tmp_path / "out").exists()
