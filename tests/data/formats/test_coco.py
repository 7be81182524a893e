"""Tests for visionkit.data.formats.coco: parsing, syntax faults, layout, pycocotools output."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from visionkit.data.formats import Problems
from visionkit.data.formats import coco as fmt
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError
from visionkit.ops.masks import mask_to_rle

# Column-major runs of a 6x8 mask: 2 set pixels after 0 unset, then 4 unset, 2 set, 40 unset.
UNCOMPRESSED = {"size": [6, 8], "counts": [0, 2, 4, 2, 40]}


def _compressed() -> dict:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:4, 2:5] = True
    return mask_to_rle(mask)


def _doc() -> dict:
    """A valid COCO document: 2 images, 3 annotations (polygon, crowd RLE, compressed RLE)."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 8, "height": 6},
            {"id": 2, "file_name": "sub/b.png", "width": 8, "height": 6},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 5,
                "bbox": [1.5, 2, 3, 2.25],
                "area": 4.5,
                "iscrowd": 0,
                "segmentation": [[1.5, 2, 4.5, 2, 4.5, 4.25]],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 7,
                "bbox": [0, 0, 2, 2],
                "iscrowd": 1,
                "segmentation": UNCOMPRESSED,
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 5,
                "bbox": [2, 1, 3, 3],
                "segmentation": _compressed(),
            },
        ],
        "categories": [
            {"id": 5, "name": "cat", "supercategory": "animal"},
            {"id": 7, "name": "crowd"},
        ],
    }


def _save(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_detect_and_splits(tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    train = _save(folder / "train.json", _doc())
    _save(folder / "val.json", _doc())
    _save(folder / "notes.json", {"images": []})
    (folder / "empty.json").write_text("")
    other = tmp_path / "other"
    _save(other / "config.json", {"lr": 0.1})
    assert fmt.detect(folder) and fmt.splits(folder) == ["train", "val"]
    assert fmt.detect(train) and fmt.splits(train) == ["train"]
    assert not fmt.detect(other) and not fmt.detect(tmp_path / "missing.json")
    assert not fmt.detect(_save(tmp_path / "x.yaml", {}))


def test_read_converts_boxes_and_keeps_every_field(tmp_path: Path) -> None:
    path = _save(tmp_path / "ds" / "train.json", _doc())
    problems = Problems(strict=False)
    catalog = fmt.read(path.parent, "train", problems)
    assert not problems.errors
    assert catalog.source == path and catalog.root == path.parent
    assert catalog.categories == [Category(5, "cat", "animal"), Category(7, "crowd", "")]
    first, second = catalog.images
    assert (first.file, first.width, first.height, first.id) == ("a.png", 8, 6, 1)
    assert catalog.image_path(second) == path.parent / "sub" / "b.png"
    assert first.annotations == [
        Annotation(
            (1.5, 2.0, 4.5, 4.25),
            5,
            id=10,
            area=4.5,
            segmentation=[[1.5, 2.0, 4.5, 2.0, 4.5, 4.25]],
        ),
        Annotation((0.0, 0.0, 2.0, 2.0), 7, id=11, iscrowd=True, segmentation=UNCOMPRESSED),
    ]
    assert second.annotations == [
        Annotation((2.0, 1.0, 5.0, 4.0), 5, id=12, segmentation=_compressed())
    ]


def test_read_resolves_file_names_against_an_image_folder(tmp_path: Path) -> None:
    path = _save(tmp_path / "annotations" / "instances.json", _doc())
    catalog = fmt.read(path, "ignored", Problems(), images=tmp_path / "pictures")
    assert catalog.source == path and catalog.root == tmp_path / "pictures"
    assert catalog.image_path(catalog.images[1]) == tmp_path / "pictures" / "sub" / "b.png"


def test_read_keeps_what_only_the_checker_judges(tmp_path: Path) -> None:
    doc = _doc()
    doc["annotations"][0]["bbox"] = [5, 1, -2, 3]  # negative width
    doc["annotations"][0]["segmentation"] = []  # no polygon at all
    doc["annotations"][1]["category_id"] = 99  # unknown category
    doc["annotations"][2]["id"] = 10  # duplicate id
    problems = Problems(strict=False)
    catalog = fmt.read(_save(tmp_path / "train.json", doc), "train", problems)
    assert not problems.errors
    first, crowd = catalog.images[0].annotations
    assert first.bbox == (5.0, 1.0, 3.0, 4.0) and first.segmentation == []
    assert crowd.category_id == 99
    assert [a.id for a in catalog.images[1].annotations] == [10]


Mutation = Callable[[dict], None]


def _set(section: str, index: int, key: str, value: object) -> Mutation:
    return lambda doc: doc[section][index].__setitem__(key, value)


def _drop(section: str, index: int, key: str) -> Mutation:
    return lambda doc: doc[section][index].pop(key)


# (change to the valid document, the faults it causes as (record, field), annotations kept)
SYNTAX_FAULTS = {
    "missing images": (
        lambda doc: doc.pop("images"),
        [(None, "images")] + [(f"annotation {i}", "image_id") for i in (10, 11, 12)],
        0,
    ),
    "images not a list": (
        lambda doc: doc.__setitem__("images", {}),
        [(None, "images")] + [(f"annotation {i}", "image_id") for i in (10, 11, 12)],
        0,
    ),
    "missing annotations": (lambda doc: doc.pop("annotations"), [(None, "annotations")], 0),
    "missing categories": (lambda doc: doc.pop("categories"), [(None, "categories")], 3),
    "record not an object": (
        lambda doc: doc["annotations"].__setitem__(1, "oops"),
        [("annotation at index 1", None)],
        2,
    ),
    "image without file_name": (
        _drop("images", 1, "file_name"),
        [("image 2", "file_name"), ("annotation 12", "image_id")],
        2,
    ),
    "non-numeric width": (
        _set("images", 1, "width", "8"),
        [("image 2", "width"), ("annotation 12", "image_id")],
        2,
    ),
    "image id not an integer": (
        _set("images", 1, "id", 2.5),
        [("image at index 1", "id"), ("annotation 12", "image_id")],
        2,
    ),
    "category without name": (_drop("categories", 1, "name"), [("category 7", "name")], 3),
    "annotation without id": (_drop("annotations", 0, "id"), [("annotation at index 0", "id")], 2),
    "annotation without bbox": (_drop("annotations", 0, "bbox"), [("annotation 10", "bbox")], 2),
    "bbox of 3 numbers": (
        _set("annotations", 0, "bbox", [1, 2, 3]),
        [("annotation 10", "bbox")],
        2,
    ),
    "non-numeric bbox": (
        _set("annotations", 0, "bbox", ["1", 2, 3, 4]),
        [("annotation 10", "bbox")],
        2,
    ),
    "boolean in bbox": (
        _set("annotations", 0, "bbox", [True, 2, 3, 4]),
        [("annotation 10", "bbox")],
        2,
    ),
    "non-numeric category_id": (
        _set("annotations", 2, "category_id", "5"),
        [("annotation 12", "category_id")],
        2,
    ),
    "non-numeric area": (_set("annotations", 0, "area", "big"), [("annotation 10", "area")], 2),
    "unknown image_id": (
        _set("annotations", 2, "image_id", 99),
        [("annotation 12", "image_id")],
        2,
    ),
    "non-numeric polygon": (
        _set("annotations", 0, "segmentation", [[1, "2", 3, 4, 5, 6]]),
        [("annotation 10", "segmentation")],
        2,
    ),
    "RLE without size": (
        _set("annotations", 1, "segmentation", {"counts": "abc"}),
        [("annotation 11", "segmentation")],
        2,
    ),
    "segmentation of the wrong type": (
        _set("annotations", 2, "segmentation", "mask.png"),
        [("annotation 12", "segmentation")],
        2,
    ),
}


@pytest.mark.parametrize("name", SYNTAX_FAULTS)
def test_syntax_faults_are_collected_and_records_skipped(tmp_path: Path, name: str) -> None:
    change, faults, kept = SYNTAX_FAULTS[name]
    doc = copy.deepcopy(_doc())
    change(doc)
    path = _save(tmp_path / "train.json", doc)
    problems = Problems(strict=False)
    catalog = fmt.read(path, "train", problems)
    assert [(e.file, e.record, e.field) for e in problems.errors] == [
        (str(path), record, field) for record, field in faults
    ]
    assert catalog.num_annotations() == kept


@pytest.mark.parametrize("name", SYNTAX_FAULTS)
def test_strict_mode_raises_the_first_syntax_fault(tmp_path: Path, name: str) -> None:
    change, faults, _ = SYNTAX_FAULTS[name]
    doc = copy.deepcopy(_doc())
    change(doc)
    path = _save(tmp_path / "train.json", doc)
    with pytest.raises(DataError) as raised:
        fmt.read(path, "train", Problems(strict=True))
    assert (raised.value.file, raised.value.record, raised.value.field) == (str(path), *faults[0])


@pytest.mark.parametrize(
    ("text", "message", "record"),
    [
        ("{'images': []}", "not valid JSON", "line 1 column 2"),
        ("[1, 2]", "top level must be an object, not a list", None),
    ],
)
def test_unusable_file_gives_one_fault_and_an_empty_catalog(
    tmp_path: Path, text: str, message: str, record: str | None
) -> None:
    path = tmp_path / "train.json"
    path.write_text(text)
    problems = Problems(strict=False)
    catalog = fmt.read(path, "train", problems)
    assert len(problems.errors) == 1 and message in str(problems.errors[0])
    assert (problems.errors[0].file, problems.errors[0].record) == (str(path), record)
    assert catalog.images == [] and catalog.categories == [] and catalog.source == path
    with pytest.raises(DataError, match=message):
        fmt.read(path, "train", Problems(strict=True))


def test_missing_split_file_is_reported(tmp_path: Path) -> None:
    _save(tmp_path / "train.json", _doc())
    with pytest.raises(DataError, match=r"val\.json: no such file"):
        fmt.read(tmp_path, "val", Problems(strict=True))


def test_write_layout_loads_in_pycocotools(detection_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = fmt.write(detection_catalog, out, "train")
    assert path == out / "train.json"
    doc = json.loads(path.read_text())
    assert {"info", "licenses", "images", "annotations", "categories"} <= doc.keys()
    assert [image["file_name"] for image in doc["images"]] == [
        f"images/train/{record.file}" for record in detection_catalog
    ]
    assert all((out / image["file_name"]).is_file() for image in doc["images"])
    first = detection_catalog.images[0].annotations[0]
    x1, y1, x2, y2 = first.bbox
    assert doc["annotations"][0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]  # full precision
    coco = COCO(str(path))
    assert len(coco.anns) == detection_catalog.num_annotations()
    assert coco.loadCats(coco.getCatIds())[2] == {
        "id": 3,
        "name": "star",
        "supercategory": "symbol",
    }
    for annotation in coco.anns.values():
        image = coco.imgs[annotation["image_id"]]
        mask = coco.annToMask(annotation)
        assert mask.shape == (image["height"], image["width"]) and mask.any()


def _one_image_catalog(root: Path, annotations: list[Annotation], width: int = 8) -> Catalog:
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, 6)).save(root / "a.png")
    record = ImageRecord("a.png", width, 6, 1, annotations)
    return Catalog(root, [Category(5, "cat")], [record])


def test_write_area_segmentation_and_crowd(tmp_path: Path) -> None:
    annotations = [
        Annotation((0.0, 0.0, 4.0, 2.0), 5, id=1, area=12.5),
        Annotation((0.0, 0.0, 4.0, 2.0), 5, id=2, iscrowd=True, segmentation=UNCOMPRESSED),
        Annotation((2.0, 1.0, 5.0, 4.0), 5, id=3, segmentation=_compressed()),
        Annotation((1.0, 1.0, 3.0, 4.0), 5, id=4, segmentation=[[1, 1, 3, 1, 3, 4, 1, 4]]),
        Annotation((1.5, 0.5, 4.0, 2.5), 5, id=5),
    ]
    path = fmt.write(_one_image_catalog(tmp_path / "src", annotations), tmp_path / "out", "val")
    written = json.loads(path.read_text())["annotations"]
    assert [a["area"] for a in written] == [12.5, 4.0, 9.0, 6.0, 5.0]
    assert [a["iscrowd"] for a in written] == [0, 1, 0, 0, 0]
    assert written[1]["segmentation"] == UNCOMPRESSED  # as given, not re-encoded
    assert written[4]["segmentation"] == [[1.5, 0.5, 4.0, 0.5, 4.0, 2.5, 1.5, 2.5]]
    coco = COCO(str(path))
    # Segment areas equal the pixel counts that pycocotools decodes; boxes rasterise as 4x2, 2x2.
    assert [int(coco.annToMask(a).sum()) for a in coco.anns.values()] == [8, 4, 9, 6, 4]


def test_second_split_keeps_the_first(detection_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fmt.write(detection_catalog, out, "train")
    fmt.write(detection_catalog, out, "val")
    assert fmt.splits(out) == ["train", "val"]
    for split in ("train", "val"):
        catalog = fmt.read(out, split, Problems())
        assert catalog.images[0].file == f"images/{split}/000001.png"
        assert catalog.num_annotations() == detection_catalog.num_annotations()


def test_write_renames_images_sharing_a_stem(tmp_path: Path) -> None:
    for folder in ("cats", "dogs"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (4, 3)).save(tmp_path / folder / "x.png")
    records = [ImageRecord("cats/x.png", 4, 3, 1), ImageRecord("dogs/x.png", 4, 3, 2)]
    path = fmt.write(Catalog(tmp_path, [], records), tmp_path / "out", "train")
    names = [image["file_name"] for image in json.loads(path.read_text())["images"]]
    assert names == ["images/train/x.png", "images/train/x_1.png"]


def test_write_reads_an_unknown_size_from_the_header(tmp_path: Path) -> None:
    catalog = _one_image_catalog(tmp_path / "src", [Annotation((1.0, 1.0, 3.0, 4.0), 5, id=1)])
    catalog.images[0].width = catalog.images[0].height = 0
    path = fmt.write(catalog, tmp_path / "out", "train")
    image = json.loads(path.read_text())["images"][0]
    assert (image["width"], image["height"]) == (8, 6)


def test_write_refuses_nothing_the_format_can_hold(tmp_path: Path) -> None:
    """COCO stores category ids as they are: an unknown one is written for the checker."""
    catalog = _one_image_catalog(tmp_path / "src", [Annotation((1.0, 1.0, 3.0, 4.0), 42, id=1)])
    path = fmt.write(catalog, tmp_path / "out", "train")
    assert json.loads(path.read_text())["annotations"][0]["category_id"] == 42
