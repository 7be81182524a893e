"""Tests for visionkit.data.formats.voc: Pascal VOC folders, read and written."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image

from visionkit.data.formats import Problems
from visionkit.data.formats import voc as fmt
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError


def _xml(filename: str, objects: str, size: str = "<width>20</width><height>10</height>") -> str:
    return (
        f"<annotation><filename>{filename}</filename>"
        f"<size>{size}<depth>3</depth></size>{objects}</annotation>"
    )


def _object(name: str, box: tuple, difficult: str = "0") -> str:
    corners = zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
    bndbox = "".join(f"<{k}>{v}</{k}>" for k, v in corners)
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult>"
        f"<bndbox>{bndbox}</bndbox></object>"
    )


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two images: 000001 (train; a difficult dog and a cat) and 000002 (val; a dog)."""
    root = tmp_path / "voc"
    _text(
        root / "Annotations" / "000001.xml",
        _xml("000001.jpg", _object("dog", (1, 2, 10, 8), "1") + _object("cat", (2.5, 3, 12.25, 9))),
    )
    _text(root / "Annotations" / "000002.xml", _xml("000002.png", _object("dog", (5, 5, 6, 6))))
    _text(root / "ImageSets" / "Main" / "train.txt", "000001\n")
    _text(root / "ImageSets" / "Main" / "val.txt", "000002\n")
    for name in ("dog", "cat"):  # per-class lists, as the VOC releases have them
        _text(root / "ImageSets" / "Main" / f"{name}_train.txt", "000001  1\n")
    return root


def test_detect_and_splits(tmp_path: Path, dataset: Path) -> None:
    assert fmt.detect(dataset) and fmt.splits(dataset) == ["train", "val"]
    (tmp_path / "other").mkdir()
    assert not fmt.detect(tmp_path / "other")
    for list_file in (dataset / "ImageSets" / "Main").iterdir():
        list_file.unlink()
    assert fmt.splits(dataset) == [fmt.ALL_SPLIT]
    catalog = fmt.read(dataset, fmt.ALL_SPLIT, Problems())
    assert [r.file for r in catalog] == ["JPEGImages/000001.jpg", "JPEGImages/000002.png"]
    assert catalog.categories == [Category(1, "cat"), Category(2, "dog")]  # sorted object names


def test_read_converts_one_based_corners(dataset: Path) -> None:
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    assert not problems.errors and catalog.root == dataset and catalog.source == dataset
    assert catalog.categories == [Category(1, "cat"), Category(2, "dog")]  # per-class lists
    assert fmt.read(dataset, "val", Problems()).categories == catalog.categories  # no cat in val
    record = catalog.images[0]
    assert (record.file, record.width, record.height, record.id) == (
        "JPEGImages/000001.jpg",
        20,
        10,
        1,
    )
    assert record.annotations == [
        Annotation((0.0, 1.0, 10.0, 8.0), 2, id=1, difficult=True),
        Annotation((1.5, 2.0, 12.25, 9.0), 1, id=2),
    ]


def test_labels_file_gives_the_ids(dataset: Path) -> None:
    _text(dataset / "labels.txt", "dog\n\ncat\nbird\n")
    catalog = fmt.read(dataset, "train", Problems())
    assert catalog.categories == [Category(1, "dog"), Category(2, "cat"), Category(3, "bird")]
    assert [a.category_id for a in catalog.images[0].annotations] == [1, 2]


# (annotation file text for 000001, (record, field) of the fault, objects kept)
XML_FAULTS = {
    "malformed XML": ("<annotation><filename>a.jpg</annotation>", (None, None), 0),
    "missing size": (_xml("a.jpg", _object("dog", (1, 1, 2, 2)), size=""), (None, "size/width"), 0),
    "non-numeric height": (
        _xml("a.jpg", "", size="<width>4</width><height>x</height>"),
        (None, "size/height"),
        0,
    ),
    "missing corner": (
        _xml(
            "a.jpg",
            _object("dog", (1, 1, 2, 2)).replace("<xmin>1</xmin>", "")
            + _object("cat", (1, 1, 2, 2)),
        ),
        ("object 1", "bndbox/xmin"),
        1,
    ),
    "non-numeric corner": (
        _xml("a.jpg", _object("cat", (1, 1, 2, 2)) + _object("dog", (1, 1, 2, "2px"))),
        ("object 2", "bndbox/ymax"),
        1,
    ),
    "object without a name": (_xml("a.jpg", _object("", (1, 1, 2, 2))), ("object 1", "name"), 0),
    "name not in labels.txt": (
        _xml("a.jpg", _object("dog", (1, 1, 2, 2)) + _object("horse", (1, 1, 2, 2))),
        ("object 2", "name"),
        1,
    ),
}


def _read_with_fault(dataset: Path, name: str, strict: bool) -> tuple[Catalog, Problems]:
    _text(dataset / "labels.txt", "cat\ndog\n")
    _text(dataset / "Annotations" / "000001.xml", XML_FAULTS[name][0])
    problems = Problems(strict=strict)
    return fmt.read(dataset, "train", problems), problems


@pytest.mark.parametrize("name", XML_FAULTS)
def test_xml_faults_are_collected_and_skipped(dataset: Path, name: str) -> None:
    _, (record, field), kept = XML_FAULTS[name]
    catalog, problems = _read_with_fault(dataset, name, strict=False)
    xml = str(dataset / "Annotations" / "000001.xml")
    assert [(e.file, e.record, e.field) for e in problems.errors] == [(xml, record, field)]
    assert catalog.num_annotations() == kept


@pytest.mark.parametrize("name", XML_FAULTS)
def test_strict_mode_raises_the_xml_fault(dataset: Path, name: str) -> None:
    _, (record, field), _ = XML_FAULTS[name]
    with pytest.raises(DataError) as raised:
        _read_with_fault(dataset, name, strict=True)
    fault = raised.value
    assert (fault.file, fault.record, fault.field) == (
        str(dataset / "Annotations" / "000001.xml"),
        record,
        field,
    )


def test_missing_split_list_and_annotation_file_are_reported(dataset: Path) -> None:
    with pytest.raises(DataError, match=r"Main: field 'split': no split list test\.txt"):
        fmt.read(dataset, "test", Problems(strict=True))
    _text(dataset / "ImageSets" / "Main" / "val.txt", "000002\n000404\n")
    problems = Problems(strict=False)
    assert len(fmt.read(dataset, "val", problems)) == 1
    assert [(e.file, e.message) for e in problems.errors] == [
        (str(dataset / "Annotations" / "000404.xml"), "no such file")
    ]


def _catalog(root: Path, name: str, annotations: list[Annotation], colour: int = 0) -> Catalog:
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (30, 20), (colour, 0, 0)).save(root / name)
    categories = [Category(1, "cat"), Category(2, "dog")]
    return Catalog(root, categories, [ImageRecord(name, 30, 20, 1, annotations)])


def test_write_layout_and_xml(tmp_path: Path) -> None:
    annotations = [
        Annotation((9.0, 1.5, 20.25, 7.0), 2, id=1, difficult=True),
        Annotation((0.0, 0.0, 12.345678, 19.99999), 1, id=2),
    ]
    out = tmp_path / "out"
    assert fmt.write(_catalog(tmp_path / "src", "p.png", annotations), out, "train") == out
    assert (out / "JPEGImages" / "p.png").is_file()
    assert (out / "ImageSets" / "Main" / "train.txt").read_text() == "p\n"
    assert (out / "labels.txt").read_text() == "cat\ndog\n"
    root = ElementTree.parse(out / "Annotations" / "p.xml").getroot()
    assert root.findtext("filename") == "p.png"
    assert [root.findtext(f"size/{k}") for k in ("width", "height", "depth")] == ["30", "20", "3"]
    objects = [
        [obj.findtext(k) for k in ("name", "pose", "truncated", "difficult")]
        + [obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        for obj in root.findall("object")
    ]
    assert objects == [
        ["dog", "Unspecified", "0", "1", "10", "2.5", "20.25", "7"],
        ["cat", "Unspecified", "0", "0", "1", "1", "12.3457", "20"],
    ]


def test_second_split_keeps_the_first_and_its_stems(tmp_path: Path) -> None:
    out = tmp_path / "out"
    box = Annotation((1.0, 1.0, 5.0, 5.0), 1, id=1)
    fmt.write(_catalog(tmp_path / "a", "000001.png", [box]), out, "train")
    fmt.write(_catalog(tmp_path / "b", "000001.png", [], colour=255), out, "val")
    fmt.write(_catalog(tmp_path / "b", "000001.png", [], colour=255), out, "val")  # same again
    assert fmt.splits(out) == ["train", "val"]
    train, val = (fmt.read(out, split, Problems()) for split in ("train", "val"))
    assert [r.file for r in train] == ["JPEGImages/000001.png"] and train.num_annotations() == 1
    assert [r.file for r in val] == ["JPEGImages/000001_1.png"] and val.num_annotations() == 0


def test_write_refuses_other_labels_and_unknown_categories(tmp_path: Path) -> None:
    out = tmp_path / "out"
    catalog = _catalog(tmp_path / "src", "p.png", [Annotation((1.0, 1.0, 5.0, 5.0), 1, id=1)])
    fmt.write(catalog, out, "train")
    catalog.categories = [Category(1, "cat")]
    with pytest.raises(DataError, match=r"labels\.txt: the catalog's classes"):
        fmt.write(catalog, out, "val")
    catalog.images[0].annotations[0].category_id = 7
    with pytest.raises(DataError, match="category id 7"):
        fmt.write(catalog, tmp_path / "fresh", "train")
    assert not (tmp_path / "fresh").exists()
