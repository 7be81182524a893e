"""Tests for visionkit.data.formats.yolo: the Ultralytics layout, read and written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from visionkit.data.formats import Problems
from visionkit.data.formats import yolo as fmt
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError, ImageError
from visionkit.ops.masks import mask_to_rle


def _image(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 20, 200)).save(path)
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """train: a.png (10x8, a box and a polygon), b.png (20x10, a box), c.png (no label file);
    val: a list file naming d.png."""
    root = tmp_path / "ds"
    _text(root / "data.yaml", "path: .\ntrain: images/train\nval: val.txt\nnames: [cat, dog]\n")
    _image(root / "images" / "train" / "a.png", (10, 8))
    _image(root / "images" / "train" / "b.png", (20, 10))
    _image(root / "images" / "train" / "c.png", (4, 4))
    _image(root / "images" / "val" / "d.png", (5, 5))
    _text(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.25\n\n1 0.1 0.2 0.3 0.2 0.2 0.6\n")
    _text(root / "labels" / "train" / "b.txt", "1 0.25 0.5 0.5 1\n")
    _text(root / "val.txt", "./images/val/d.png\n")
    return root


def test_detect_and_splits(tmp_path: Path, dataset: Path) -> None:
    assert fmt.detect(dataset) and fmt.detect(dataset / "data.yaml")
    assert fmt.splits(dataset) == ["train", "val"]
    _text(tmp_path / "nameless" / "data.yaml", "train: images\n")
    (tmp_path / "empty").mkdir()
    assert not fmt.detect(tmp_path / "nameless") and not fmt.detect(tmp_path / "empty")
    assert not fmt.detect(_text(tmp_path / "x.json", "{}"))
    extra = _text(tmp_path / "extra.yaml", "all: a\ntest: t\ndownload: x\nval: v\nnames: [a]\n")
    assert fmt.splits(extra) == ["val", "test", "all"]


def test_read_denormalises_boxes_and_polygons(dataset: Path) -> None:
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    assert not problems.errors
    assert catalog.root == dataset.absolute() and catalog.source == dataset.absolute() / "data.yaml"
    assert catalog.categories == [Category(1, "cat"), Category(2, "dog")]
    assert [(r.file, r.width, r.height, r.id) for r in catalog] == [
        ("images/train/a.png", 10, 8, 1),
        ("images/train/b.png", 20, 10, 2),
        ("images/train/c.png", 4, 4, 3),
    ]
    box, polygon = catalog.images[0].annotations
    assert box.bbox == pytest.approx((4.0, 3.0, 6.0, 5.0)) and box.category_id == 1
    assert polygon.segmentation == [pytest.approx([1.0, 1.6, 3.0, 1.6, 2.0, 4.8])]
    assert polygon.bbox == pytest.approx((1.0, 1.6, 3.0, 4.8)) and polygon.category_id == 2
    assert catalog.images[1].annotations[0].bbox == pytest.approx((0.0, 0.0, 10.0, 10.0))
    assert catalog.images[2].annotations == []
    assert [a.id for r in catalog for a in r.annotations] == [1, 2, 3]


def test_read_list_file_names_dict_and_relative_path(tmp_path: Path, dataset: Path) -> None:
    val = fmt.read(dataset, "val", Problems())
    assert [r.file for r in val] == ["images/val/d.png"]
    config = _text(
        tmp_path / "configs" / "pets.yaml",
        "path: ../ds\ntrain: [images/train, images/val]\nnames: {0: cat, 1: dog}\n",
    )
    catalog = fmt.read(config, "train", Problems())
    assert catalog.root == tmp_path / "configs" / ".." / "ds"
    assert catalog.names == {1: "cat", 2: "dog"}
    assert [r.file for r in catalog] == [
        f"images/{n}.png" for n in ("train/a", "train/b", "train/c", "val/d")
    ]


def test_read_takes_dot_dot_entries_inside_the_folder_as_ultralytics_does(dataset: Path) -> None:
    _text(dataset / "data.yaml", "train: ../images/train\nnames: [cat, dog]\n")
    assert len(fmt.read(dataset, "train", Problems())) == 3


def test_read_honours_exif_orientation(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _text(root / "data.yaml", "train: images\nnames: [cat]\n")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed 10 wide, 20 high
    (root / "images").mkdir()
    Image.new("RGB", (20, 10)).save(root / "images" / "p.jpg", exif=exif)
    _text(root / "labels" / "p.txt", "0 0.5 0.5 0.5 0.5\n")
    record = fmt.read(root, "train", Problems()).images[0]
    assert (record.width, record.height) == (10, 20)
    assert record.annotations[0].bbox == pytest.approx((2.5, 5.0, 7.5, 15.0))


def test_class_index_outside_names_is_kept_for_the_checker(dataset: Path) -> None:
    _text(dataset / "labels" / "train" / "c.txt", "5 0.5 0.5 0.5 0.5\n")
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    assert not problems.errors and catalog.images[2].annotations[0].category_id == 6


# (file to write, its text, (faulty file, record, field), images and annotations kept)
LABEL_FAULTS = {
    "too few values": ("labels/train/b.txt", "1 0.2 0.2 0.1\n", ("line 1", "values"), 2),
    "six values": ("labels/train/b.txt", "1 0.1 0.2 0.3 0.4 0.5\n", ("line 1", "values"), 2),
    "non-numeric box": (
        "labels/train/a.txt",
        "0 0.5 half 0.2 0.2\n1 .1 .1 .1 .1\n",
        ("line 1", "cy"),
        2,
    ),
    "non-numeric polygon": ("labels/train/b.txt", "0 0.1 0.1 0.2 x 0.3 0.1\n", ("line 1", "y2"), 2),
    "fractional class": ("labels/train/b.txt", "0.5 0.5 0.5 0.2 0.2\n", ("line 1", "class"), 2),
    "label of a missing image": (
        "labels/train/zz.txt",
        "0 0.5 0.5 0.2 0.2\n",
        ("label zz", "image"),
        3,
    ),
}


def _read_with_fault(dataset: Path, name: str, strict: bool) -> tuple[Catalog, Problems]:
    file, text, _, _ = LABEL_FAULTS[name]
    _text(dataset / file, text)
    problems = Problems(strict=strict)
    return fmt.read(dataset, "train", problems), problems


@pytest.mark.parametrize("name", LABEL_FAULTS)
def test_label_faults_are_collected_and_lines_skipped(dataset: Path, name: str) -> None:
    file, _, (record, field), kept = LABEL_FAULTS[name]
    catalog, problems = _read_with_fault(dataset, name, strict=False)
    faulty = str(dataset.absolute() / file)
    assert [(e.file, e.record, e.field) for e in problems.errors] == [(faulty, record, field)]
    assert len(catalog) == 3 and catalog.num_annotations() == kept


@pytest.mark.parametrize("name", LABEL_FAULTS)
def test_strict_mode_raises_the_label_fault(dataset: Path, name: str) -> None:
    file, _, (record, field), _ = LABEL_FAULTS[name]
    with pytest.raises(DataError) as raised:
        _read_with_fault(dataset, name, strict=True)
    fault = raised.value
    assert (fault.file, fault.record, fault.field) == (
        str(dataset.absolute() / file),
        record,
        field,
    )


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("names: [cat\ntrain: images/train\n", None, "not valid YAML"),
        ("- just\n- a list\n", None, "top level must be a mapping"),
        ("path: .\ntrain: images/train\n", "names", "missing"),
        ("train: images/train\nnames: cat\n", "names", "must be a list or a mapping"),
        ("train: images/train\nnames: {zero: cat}\n", "names", "must be integers"),
    ],
)
def test_yaml_faults_give_an_empty_catalog(
    dataset: Path, text: str, field: str | None, message: str
) -> None:
    yaml_path = _text(dataset / "data.yaml", text)
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    assert [(e.file, e.field) for e in problems.errors] == [(str(yaml_path.absolute()), field)]
    assert message in problems.errors[0].message and len(catalog) == 0
    with pytest.raises(DataError, match=message):
        fmt.read(dataset, "train", Problems(strict=True))


def test_missing_split_folder_and_unreadable_image_are_reported(dataset: Path) -> None:
    _text(dataset / "data.yaml", "train: [images/train, images/nowhere]\nnames: [cat, dog]\n")
    (dataset / "images" / "train" / "b.png").write_bytes(b"not a png")
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    assert [(type(e), e.file, e.field) for e in problems.errors] == [
        (DataError, str(dataset.absolute() / "data.yaml"), "train"),
        (ImageError, str(dataset.absolute() / "images" / "train" / "b.png"), None),
    ]
    assert [r.file for r in catalog] == ["images/train/a.png", "images/train/c.png"]


LINE = re.compile(r"^\d+( \d\.\d{6}){4}$")


def test_write_follows_the_ultralytics_layout(detection_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert fmt.write(detection_catalog, out, "train") == out / "data.yaml"
    assert yaml.safe_load((out / "data.yaml").read_text()) == {
        "path": ".",
        "train": "images/train",
        "names": {0: "circle", 1: "square", 2: "star"},
    }
    images = sorted(
        p.relative_to(out / "images").with_suffix("") for p in (out / "images").rglob("*.png")
    )
    labels = sorted(
        p.relative_to(out / "labels").with_suffix("") for p in (out / "labels").rglob("*.txt")
    )
    assert labels == images and len(images) == 20
    for record in detection_catalog:
        lines = (out / "labels" / "train" / record.file).with_suffix(".txt").read_text()
        lines = lines.splitlines()
        assert len(lines) == len(record.annotations)
        for line, annotation in zip(lines, record.annotations, strict=True):
            assert LINE.match(line), line
            values = [float(v) for v in line.split()[1:]]
            assert all(0 <= v <= 1 for v in values)
            assert int(line.split()[0]) == annotation.category_id - 1  # ids 1..3 in order


def test_second_split_keeps_the_first(detection_catalog: Catalog, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fmt.write(detection_catalog, out, "val")
    fmt.write(detection_catalog, out, "train")
    written = yaml.safe_load((out / "data.yaml").read_text())
    assert list(written) == ["path", "train", "val", "names"]
    assert written["val"] == "images/val" and fmt.splits(out) == ["train", "val"]
    assert len(fmt.read(out, "val", Problems())) == 20


def _catalog(root: Path, annotations: list[Annotation]) -> Catalog:
    _image(root / "a.png", (10, 8))
    return Catalog(root, [Category(4, "cat")], [ImageRecord("a.png", 10, 8, 1, annotations)])


def test_segment_format_when_every_object_has_a_segmentation(tmp_path: Path) -> None:
    mask = np.zeros((8, 10), dtype=bool)
    mask[1:5, 2:7] = True  # the larger part: its outline runs along pixel edges x 2..7, y 1..5
    mask[6:8, 8:10] = True
    annotations = [
        Annotation((1.0, 1.0, 4.0, 5.0), 4, id=1, segmentation=[[1, 1, 4, 1, 4, 5]]),
        Annotation((2.0, 1.0, 10.0, 8.0), 4, id=2, segmentation=mask_to_rle(mask)),
        Annotation((1.0, 2.0, 3.0, 4.0), 4, id=3, segmentation=[]),
    ]
    out = tmp_path / "out"
    fmt.write(_catalog(tmp_path / "src", annotations), out, "train")
    lines = (out / "labels" / "train" / "a.txt").read_text().splitlines()
    assert lines[0] == "0 0.100000 0.125000 0.400000 0.125000 0.400000 0.625000"
    back = fmt.read(out, "train", Problems()).images[0].annotations
    assert back[1].bbox == pytest.approx((2.0, 1.0, 10.0, 8.0))  # both parts: the whole box
    assert back[2].segmentation == [pytest.approx([1, 2, 3, 2, 3, 4, 1, 4])]  # its box


def test_detect_format_when_an_object_has_no_segmentation(tmp_path: Path) -> None:
    annotations = [
        Annotation((1.0, 1.0, 4.0, 5.0), 4, id=1, segmentation=[[1, 1, 4, 1, 4, 5]]),
        Annotation((2.5, 2.0, 7.5, 8.0), 4, id=2),
    ]
    out = tmp_path / "out"
    fmt.write(_catalog(tmp_path / "src", annotations), out, "train")
    assert (out / "labels" / "train" / "a.txt").read_text() == (
        "0 0.250000 0.375000 0.300000 0.500000\n0 0.500000 0.625000 0.500000 0.750000\n"
    )


def test_write_refuses_other_names_and_unknown_categories(tmp_path: Path) -> None:
    out = tmp_path / "out"
    catalog = _catalog(tmp_path / "src", [Annotation((1.0, 1.0, 4.0, 5.0), 4, id=1)])
    fmt.write(catalog, out, "train")
    catalog.categories = [Category(4, "dog")]
    with pytest.raises(DataError, match=r"data\.yaml: field 'names'"):
        fmt.write(catalog, out, "val")
    catalog.categories = [Category(4, "cat")]
    catalog.images[0].annotations[0].category_id = 9
    with pytest.raises(DataError, match="category id 9"):
        fmt.write(catalog, out, "val")
    assert not (out / "images" / "val").exists()
