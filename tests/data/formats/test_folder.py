"""Tests for visionkit.data.formats.folder: class-folder classification datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from visionkit.data.formats import Problems, read_catalog, write_catalog
from visionkit.data.formats import folder as fmt
from visionkit.data.records import Catalog, Category, ImageRecord
from visionkit.errors import DataError, ImageError


def _image(path: Path, size: tuple[int, int] = (6, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)
    return path


@pytest.fixture
def split_dataset(tmp_path: Path) -> Path:
    """train has cat, dog, zebra; val has cat and dog only."""
    root = tmp_path / "pets"
    for split, classes in {"train": ["zebra", "cat", "dog"], "val": ["dog", "cat"]}.items():
        for name in classes:
            _image(root / split / name / f"{name}1.png")
            _image(root / split / name / f"{name}2.jpg", size=(8, 5))
    return root


def test_detects_split_and_flat_layouts(tmp_path: Path, split_dataset: Path) -> None:
    flat = tmp_path / "flat"
    _image(flat / "a" / "x.png")
    assert fmt.detect(split_dataset) and fmt.splits(split_dataset) == ["train", "val"]
    assert fmt.detect(flat) and fmt.splits(flat) == [fmt.SINGLE_SPLIT]


def test_does_not_detect_other_layouts(tmp_path: Path) -> None:
    masks = tmp_path / "masks_format"
    _image(masks / "images" / "train" / "a.png")
    _image(masks / "masks" / "train" / "a.png")
    yolo = tmp_path / "yolo"
    _image(yolo / "images" / "train" / "a.png")
    (yolo / "labels" / "train").mkdir(parents=True)
    texts = tmp_path / "texts" / "a"
    texts.mkdir(parents=True)
    (texts / "notes.txt").write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (masks, yolo, texts.parent, empty, _image(tmp_path / "one.png")):
        assert not fmt.detect(path)
        assert fmt.splits(path) == []


def test_ids_are_sorted_class_names_shared_by_all_splits(split_dataset: Path) -> None:
    expected = [Category(0, "cat"), Category(1, "dog"), Category(2, "zebra")]
    train = fmt.read(split_dataset, "train", Problems())
    val = fmt.read(split_dataset, "val", Problems())
    assert train.categories == expected and val.categories == expected
    assert [(r.file, r.label) for r in val] == [
        ("val/cat/cat1.png", 0),
        ("val/cat/cat2.jpg", 0),
        ("val/dog/dog1.png", 1),
        ("val/dog/dog2.jpg", 1),
    ]
    assert len(train) == 6 and {r.label for r in train} == {0, 1, 2}


def test_records_carry_header_size_unique_ids_and_no_annotations(split_dataset: Path) -> None:
    catalog = fmt.read(split_dataset, "val", Problems())
    assert catalog.root == split_dataset and catalog.source == split_dataset
    assert [(r.width, r.height) for r in catalog] == [(6, 4), (8, 5)] * 2
    assert len({r.id for r in catalog}) == len(catalog)
    assert all(r.annotations == [] and r.mask_file is None for r in catalog)
    assert all(catalog.image_path(r).is_file() for r in catalog)


def test_flat_layout_reads_as_one_split(tmp_path: Path) -> None:
    _image(tmp_path / "b" / "x.png")
    _image(tmp_path / "a" / "y.png")
    catalog = read_catalog(tmp_path, format="folder")
    assert catalog.names == {0: "a", 1: "b"}
    assert [(r.file, r.label) for r in catalog] == [("a/y.png", 0), ("b/x.png", 1)]


def test_images_nested_in_a_class_folder_belong_to_it(split_dataset: Path) -> None:
    _image(split_dataset / "val" / "cat" / "indoor" / "cat3.png")
    catalog = fmt.read(split_dataset, "val", Problems())
    assert ("val/cat/indoor/cat3.png", 0) in [(r.file, r.label) for r in catalog]


def test_hidden_files_and_folders_are_ignored(split_dataset: Path) -> None:
    (split_dataset / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    _image(split_dataset / "train" / ".ipynb_checkpoints" / "x.png")
    _image(split_dataset / "train" / "cat" / ".thumbs" / "x.png")
    catalog = fmt.read(split_dataset, "train", Problems())
    assert [c.name for c in catalog.categories] == ["cat", "dog", "zebra"]
    assert len(catalog) == 6


def test_faults_are_collected_with_their_files(split_dataset: Path) -> None:
    train = split_dataset / "train"
    (train / "empty").mkdir()
    (train / "cat" / "notes.txt").write_text("not an image")
    _image(train / "loose.png")
    problems = Problems(strict=False)
    catalog = fmt.read(split_dataset, "train", problems)
    messages = [str(error) for error in problems.errors]
    assert len(messages) == 3
    assert any(str(train / "empty") in m and "no images" in m for m in messages)
    assert any(str(train / "cat" / "notes.txt") in m and "not an image" in m for m in messages)
    assert any(str(train / "loose.png") in m and "outside any class" in m for m in messages)
    assert len(catalog) == 6 and "empty" in catalog.names.values()


def test_strict_mode_raises_the_first_fault(split_dataset: Path) -> None:
    (split_dataset / "val" / "dog" / "labels.csv").write_text("x")
    with pytest.raises(DataError, match=r"labels\.csv"):
        fmt.read(split_dataset, "val", Problems(strict=True))


def test_unreadable_header_gives_unknown_size(split_dataset: Path) -> None:
    (split_dataset / "val" / "cat" / "broken.png").write_bytes(b"not a png")
    catalog = fmt.read(split_dataset, "val", Problems())
    broken = next(r for r in catalog if r.file.endswith("broken.png"))
    assert (broken.width, broken.height) == (0, 0)


def test_unknown_split_raises(split_dataset: Path) -> None:
    with pytest.raises(DataError, match="test"):
        fmt.read(split_dataset, "test", Problems())


def test_round_trip_keeps_classes_and_files(tmp_path: Path, split_dataset: Path) -> None:
    catalog = read_catalog(split_dataset, "train", format="folder")
    out = write_catalog(catalog, tmp_path / "copy", "folder", split="train")
    back = read_catalog(out, "train", format="folder")
    assert back.categories == catalog.categories
    assert [(r.file, r.label, r.width, r.height) for r in back] == [
        (r.file, r.label, r.width, r.height) for r in catalog
    ]
    first = catalog.image_path(catalog.images[0])
    assert os.path.samefile(first, back.image_path(back.images[0])) or (
        first.read_bytes() == back.image_path(back.images[0]).read_bytes()
    )


def _catalog(root: Path, records: list[ImageRecord], names: dict[int, str]) -> Catalog:
    return Catalog(root, [Category(i, n) for i, n in names.items()], records, source=root)


def test_write_makes_shared_basenames_unique(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for folder in ("a", "b", "c"):
        _image(src / folder / "img.png")
    _image(src / "d" / "IMG.png")
    records = [
        ImageRecord(f"{f}/{n}", 6, 4, i, label=7)
        for i, (f, n) in enumerate(
            [("a", "img.png"), ("b", "img.png"), ("c", "img.png"), ("d", "IMG.png")]
        )
    ]
    out = fmt.write(_catalog(src, records, {7: "bird"}), tmp_path / "out", "train")
    written = sorted(p.name for p in (out / "train" / "bird").iterdir())
    assert written == ["IMG_3.png", "img.png", "img_1.png", "img_2.png"]


@pytest.mark.parametrize(
    ("record", "names", "error", "match"),
    [
        (ImageRecord("a.png", 6, 4, 1), {0: "cat"}, DataError, "no class label"),
        (ImageRecord("a.png", 6, 4, 1, label=5), {0: "cat"}, DataError, "unknown class"),
        (ImageRecord("a.png", 6, 4, 1, label=0), {0: "cat/dog"}, DataError, "folder name"),
        (ImageRecord("gone.png", 6, 4, 1, label=0), {0: "cat"}, ImageError, "gone.png"),
    ],
)
def test_write_refuses_bad_records(
    tmp_path: Path, record: ImageRecord, names: dict, error: type, match: str
) -> None:
    _image(tmp_path / "a.png")
    with pytest.raises(error, match=match):
        fmt.write(_catalog(tmp_path, [record], names), tmp_path / "out", "train")
