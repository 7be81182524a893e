"""Tests for visionkit.data.formats.masks: PNG semantic-mask datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.data.formats import Problems, read_catalog, write_catalog
from visionkit.data.formats import masks as fmt
from visionkit.data.images import read_mask
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError, ImageError
from visionkit.ops.masks import mask_to_rle

CLASSES = "0 background\n1 cat\n2 hot dog\n"


def _save(array: np.ndarray, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _class_mask(height: int = 4, width: int = 6) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[1:3, 1:3] = 1
    mask[:, 4:] = 2
    mask[0, 0] = 255
    return mask


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """train: a.jpg with a gray mask, b.png with a palette mask; val: c.png."""
    root = tmp_path / "seg"
    rgb = np.full((4, 6, 3), 90, dtype=np.uint8)
    _save(rgb, root / "images" / "train" / "a.jpg")
    _save(rgb, root / "images" / "train" / "b.png")
    _save(rgb, root / "images" / "val" / "c.png")
    _save(_class_mask(), root / "masks" / "train" / "a.png")
    palette = Image.fromarray(_class_mask()).convert("P")
    palette.save(root / "masks" / "train" / "b.png")
    _save(_class_mask(), root / "masks" / "val" / "c.png")
    (root / "classes.txt").write_text(CLASSES)
    return root


def test_detect_and_splits(tmp_path: Path, dataset: Path) -> None:
    assert fmt.detect(dataset) and fmt.splits(dataset) == ["train", "val"]
    (tmp_path / "only_images" / "images").mkdir(parents=True)
    assert not fmt.detect(tmp_path / "only_images")


def test_read_gives_mask_files_categories_and_sizes(dataset: Path) -> None:
    catalog = fmt.read(dataset, "train", Problems())
    assert catalog.categories == [
        Category(0, "background"),
        Category(1, "cat"),
        Category(2, "hot dog"),
    ]
    assert [(r.file, r.mask_file, r.width, r.height) for r in catalog] == [
        ("images/train/a.jpg", "masks/train/a.png", 6, 4),
        ("images/train/b.png", "masks/train/b.png", 6, 4),
    ]
    assert all(r.annotations == [] and r.label is None for r in catalog)
    for record in catalog:
        np.testing.assert_array_equal(read_mask(catalog.mask_path(record)), _class_mask())


def test_missing_pairs_and_bad_files_are_collected(dataset: Path) -> None:
    train = dataset / "images" / "train"
    _save(np.zeros((4, 6, 3), np.uint8), train / "lonely.png")
    _save(np.zeros((4, 6, 3), np.uint8), train / "a.png")  # same stem as a.jpg
    (train / "notes.txt").write_text("x")
    _save(_class_mask(), dataset / "masks" / "train" / "orphan.png")
    _save(_class_mask(), dataset / "masks" / "train" / "b.jpg")
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    found = {Path(e.file).name: e.message for e in problems.errors}
    assert set(found) == {"lonely.png", "a.png", "notes.txt", "orphan.png", "b.jpg"}
    assert "no mask" in found["lonely.png"] and "no image" in found["orphan.png"]
    assert "PNG" in found["b.jpg"] and "same stem" in found["a.png"]
    assert [r.file for r in catalog] == ["images/train/a.jpg", "images/train/b.png"]


@pytest.mark.parametrize(
    ("text", "record", "field"),
    [
        ("0 background\ncat\n", "line 2", "name"),
        ("0 background\nx cat\n", "line 2", "id"),
        ("0 background\n\n255 cat\n", "line 3", "id"),
        ("0 background\n0 cat\n", "line 2", "id"),
    ],
)
def test_unparseable_classes_are_reported(
    dataset: Path, text: str, record: str, field: str
) -> None:
    (dataset / "classes.txt").write_text(text)
    problems = Problems(strict=False)
    catalog = fmt.read(dataset, "train", problems)
    [error] = problems.errors
    assert (Path(error.file).name, error.record, error.field) == ("classes.txt", record, field)
    assert catalog.categories == [Category(0, "background")]
    with pytest.raises(DataError, match=r"classes\.txt"):
        fmt.read(dataset, "train", Problems(strict=True))


def test_missing_classes_file_is_reported(dataset: Path) -> None:
    (dataset / "classes.txt").unlink()
    with pytest.raises(DataError, match="missing class list"):
        read_catalog(dataset, "val", format="masks")


def test_round_trip_keeps_masks(tmp_path: Path, dataset: Path) -> None:
    catalog = read_catalog(dataset, "train", format="masks")
    out = write_catalog(catalog, tmp_path / "copy", "masks", split="train")
    back = read_catalog(out, "train", format="masks")
    assert back.categories == catalog.categories
    assert [(r.file, r.mask_file) for r in back] == [(r.file, r.mask_file) for r in catalog]
    for record in back:
        np.testing.assert_array_equal(read_mask(back.mask_path(record)), _class_mask())
    assert (out / "classes.txt").read_text() == CLASSES


def _square(x: float, y: float, size: float) -> list[list[float]]:
    return [[x, y, x + size, y, x + size, y + size, x, y + size]]


def _catalog(root: Path, records: list[ImageRecord], categories: list[Category]) -> Catalog:
    for record in records:
        _save(np.zeros((record.height, record.width, 3), np.uint8), root / record.file)
    return Catalog(root, categories, records, source=root / "instances.json")


def test_write_renders_segmentations_later_on_top(tmp_path: Path) -> None:
    rle_square = np.zeros((10, 10), dtype=bool)
    rle_square[0:2, 8:10] = True
    annotations = [
        Annotation((0, 0, 6, 6), 3, id=1, segmentation=_square(0, 0, 6)),
        Annotation((4, 4, 8, 8), 7, id=2, segmentation=_square(4, 4, 4)),
        Annotation((8, 0, 10, 2), 3, id=3, segmentation=mask_to_rle(rle_square)),
    ]
    records = [
        ImageRecord("coco/x.jpg", 10, 10, 1, annotations=annotations),
        ImageRecord("coco/empty.jpg", 10, 10, 2),
    ]
    catalog = _catalog(tmp_path / "src", records, [Category(3, "cat"), Category(7, "dog")])
    out = fmt.write(catalog, tmp_path / "out", "val")
    assert (out / "classes.txt").read_text() == "0 background\n3 cat\n7 dog\n"
    mask = read_mask(out / "masks" / "val" / "x.png")
    assert mask[1, 1] == 3 and mask[5, 5] == 7 and mask[9, 0] == 0 and mask[0, 9] == 3
    assert set(np.unique(mask)) == {0, 3, 7}
    assert not read_mask(out / "masks" / "val" / "empty.png").any()
    back = fmt.read(out, "val", Problems())
    assert back.names == {0: "background", 3: "cat", 7: "dog"} and len(back) == 2


def test_write_makes_stems_unique_and_reencodes_non_png_masks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _save(_class_mask(), src / "m" / "a.bmp")
    records = [
        ImageRecord("one/a.jpg", 6, 4, 1, mask_file="m/a.bmp"),
        ImageRecord("two/a.png", 6, 4, 2, mask_file="m/a.bmp"),
    ]
    catalog = _catalog(src, records, [Category(0, "bg"), Category(1, "cat"), Category(2, "dog")])
    out = fmt.write(catalog, tmp_path / "out", "train")
    back = fmt.read(out, "train", Problems())
    assert [r.file for r in back] == ["images/train/a.jpg", "images/train/a_1.png"]
    for record in back:
        np.testing.assert_array_equal(read_mask(back.mask_path(record)), _class_mask())
    assert (out / "classes.txt").read_text() == "0 bg\n1 cat\n2 dog\n"


@pytest.mark.parametrize(
    ("record", "categories", "error", "match"),
    [
        (
            ImageRecord("a.png", 6, 4, 1, annotations=[Annotation((0, 0, 2, 2), 1)]),
            [Category(1, "cat")],
            DataError,
            "no segmentation",
        ),
        (ImageRecord("a.png", 6, 4, 1, label=1), [Category(1, "cat")], DataError, "image label"),
        (ImageRecord("a.png", 6, 4, 1), [Category(300, "cat")], DataError, "outside 0..254"),
        (
            ImageRecord("a.png", 6, 4, 1, mask_file="gone.png"),
            [Category(1, "cat")],
            ImageError,
            "gone.png",
        ),
    ],
)
def test_write_refuses_what_a_mask_cannot_hold(
    tmp_path: Path, record: ImageRecord, categories: list, error: type, match: str
) -> None:
    catalog = _catalog(tmp_path / "src", [record], categories)
    with pytest.raises(error, match=match):
        fmt.write(catalog, tmp_path / "out", "train")


def test_render_mask_refuses_a_segmentation_of_another_size() -> None:
    rle = mask_to_rle(np.ones((3, 3), dtype=bool))
    record = ImageRecord(
        "a.png", 6, 4, 1, annotations=[Annotation((0, 0, 3, 3), 1, id=9, segmentation=rle)]
    )
    with pytest.raises(DataError, match="annotation 9"):
        fmt.render_mask(record, 4, 6)
