"""Semantic dataset checks: each fault reported once, with the right file, record and field."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.data.check import check_catalog, check_dataset, load_checked
from visionkit.data.formats import Problems, write_catalog
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError, ImageError
from visionkit.ops.masks import mask_to_rle

W, H = 40, 30


def _png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A folder of tiny images and masks, one of them truncated."""
    root = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "noise.png"):
        _png(root / name, rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    data = (root / "noise.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[5:10, 5:10], mask[0, 0] = 1, 255
    _png(root / "mask.png", mask)
    _png(root / "small_mask.png", mask[:10, :20])
    mask[20:, 20:] = 7
    _png(root / "stray_mask.png", mask)
    return root


def _clean(root: Path) -> Catalog:
    """Detection, segmentation, classification and a semantic mask, all valid."""
    polygon = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0]]
    rle = mask_to_rle(np.zeros((H, W), dtype=bool))
    return Catalog(
        root=root,
        categories=[Category(1, "circle"), Category(2, "square")],
        source=root / "annotations.json",
        images=[
            ImageRecord(
                "a.png",
                W,
                H,
                1,
                annotations=[
                    # Within the 1 px tolerance of the right edge.
                    Annotation((0.0, 0.0, W + 0.5, H), 1, id=1, segmentation=polygon),
                    Annotation((5.0, 5.0, 20.0, 20.0), 2, id=2, segmentation=rle),
                ],
            ),
            ImageRecord("b.png", W, H, 2, label=2, mask_file="mask.png"),
            # Size unknown in the dataset file: boxes are held to the real size.
            ImageRecord(
                "b.png",
                0,
                0,
                3,
                annotations=[
                    Annotation((1.0, 1.0, 10.0, 10.0), 1, id=3),
                    Annotation((1.0, 1.0, 39.0, 29.0), 2),  # id 0 ("none") may repeat
                    Annotation((2.0, 2.0, 9.0, 9.0), 2, segmentation=polygon),
                ],
            ),
        ],
    )


def _faults(catalog: Catalog, **kwargs) -> list[DataError]:
    problems = Problems(strict=False)
    check_catalog(catalog, problems, **kwargs)
    return problems.errors


def _annotation(catalog: Catalog, image: int, index: int) -> Annotation:
    return catalog.images[image].annotations[index]


def _set(obj_of, **changes):
    """A mutation of the clean catalog: set attributes of ``obj_of(catalog)``."""

    def mutate(catalog: Catalog) -> None:
        for name, value in changes.items():
            setattr(obj_of(catalog), name, value)

    return mutate


def _image(i):
    return lambda c: c.images[i]


def _ann(i, j):
    return lambda c: _annotation(c, i, j)


SOURCE = "annotations.json"
# A table, one case per entry, kept dense on purpose.
# fmt: off
# (mutation, file, record, field, words in the message, error type)
FAULTS = {
    "missing image": (_set(_image(0), file="gone.png"), "gone.png", "image 1", "file",
                      "not found", ImageError),
    "truncated image": (_set(_image(1), file="truncated.png"), "truncated.png", "image 2",
                        "file", "decode", ImageError),
    "wrong recorded width": (_set(_image(1), width=W + 10), "b.png", "image 2", "width",
                             f"{W}x{H}", DataError),
    "wrong recorded height": (_set(_image(1), height=H - 1), "b.png", "image 2", "height",
                              f"{W}x{H}", DataError),
    "negative width": (_set(_ann(0, 1), bbox=(20.0, 5.0, 10.0, 20.0)), SOURCE, "annotation 2",
                       "bbox", "negative width", DataError),
    "zero height": (_set(_ann(0, 1), bbox=(5.0, 5.0, 20.0, 5.0)), SOURCE, "annotation 2",
                    "bbox", "zero height", DataError),
    "box outside": (_set(_ann(0, 1), bbox=(30.0, 5.0, W + 1.5, 20.0)), SOURCE, "annotation 2",
                    "bbox", "outside", DataError),
    "box left of image": (_set(_ann(0, 1), bbox=(-2.0, 5.0, 10.0, 20.0)), SOURCE,
                          "annotation 2", "bbox", "outside", DataError),
    "box outside real size": (_set(_ann(2, 0), bbox=(1.0, 1.0, 10.0, H + 5.0)), SOURCE,
                              "annotation 3", "bbox", f"outside the {W}x{H} image", DataError),
    "non-finite box": (_set(_ann(0, 1), bbox=(float("nan"), 5.0, 10.0, 20.0)), SOURCE,
                       "annotation 2", "bbox", "non-finite", DataError),
    "unknown category": (_set(_ann(0, 0), category_id=9), SOURCE, "annotation 1",
                         "category_id", "unknown category id 9", DataError),
    "unknown image label": (_set(_image(1), label=9), SOURCE, "image 2", "label",
                            "unknown category id 9", DataError),
    "duplicate annotation id": (_set(_ann(2, 0), id=1), SOURCE, "annotation 1", "id",
                                "used by 2 annotations", DataError),
    "duplicate image id": (_set(_image(2), id=1), SOURCE, "image 1", "id", "used by 2 images",
                           DataError),
    "duplicate category id": (lambda c: c.categories.append(Category(2, "triangle")), SOURCE,
                              "category 2", "id", "used by 2 categories", DataError),
    "duplicate category name": (lambda c: c.categories.append(Category(3, "circle")), SOURCE,
                                "category 'circle'", "name", "used by 2 categories",
                                DataError),
    "empty polygon list": (_set(_ann(0, 0), segmentation=[]), SOURCE, "annotation 1",
                           "segmentation", "empty polygon list", DataError),
    "two-point polygon": (_set(_ann(0, 0), segmentation=[[0, 0, 5, 5, 9, 9], [0, 0, 5, 5]]),
                          SOURCE, "annotation 1", "segmentation", "polygon 1 has fewer than 3",
                          DataError),
    "short polygon without id": (_set(_ann(2, 2), segmentation=[[1, 1, 5, 5]]), SOURCE,
                                 "image 3 annotation #3", "segmentation", "fewer than 3",
                                 DataError),
    "RLE of wrong size": (_set(_ann(0, 1), segmentation=mask_to_rle(np.zeros((H, 20), bool))),
                          SOURCE, "annotation 2", "segmentation", "mask of the wrong size",
                          DataError),
    "missing mask": (_set(_image(1), mask_file="gone_mask.png"), "gone_mask.png", "image 2",
                     "mask_file", "not found", ImageError),
    "mask of wrong size": (_set(_image(1), mask_file="small_mask.png"), "small_mask.png",
                           "image 2", "mask_file", f"20x10 pixels, its image {W}x{H}",
                           DataError),
    "stray mask values": (_set(_image(1), mask_file="stray_mask.png"), "stray_mask.png",
                          "image 2", "mask_file", "values [7]", DataError),
}
# fmt: on


def test_clean_catalog_has_no_faults(root):
    assert _faults(_clean(root)) == []
    assert _faults(_clean(root), verify_images=False) == []


@pytest.mark.parametrize("case", FAULTS, ids=list(FAULTS))
def test_each_fault_is_reported_once_with_file_record_and_field(root, case):
    mutate, file, record, field, words, kind = FAULTS[case]
    catalog = _clean(root)
    mutate(catalog)
    faults = _faults(catalog)
    assert len(faults) == 1, [str(f) for f in faults]
    fault = faults[0]
    assert (Path(fault.file), fault.record, fault.field) == (root / file, record, field)
    assert words in fault.message
    assert type(fault) is kind


def test_split_without_labels_fails():
    catalog = Catalog(
        Path("."),
        [Category(1, "circle")],
        [ImageRecord("a.png", W, H, 1)],
        source=Path("train.json"),
    )
    faults = _faults(catalog, verify_images=False)
    assert len(faults) == 2  # the missing image, and no labels
    assert "no labels" in faults[0].message and faults[0].file == "train.json"
    assert "no labels" in _faults(Catalog(Path("."), [], []))[0].message


def test_without_verification_only_existence_and_unknown_sizes_are_read(root):
    catalog = _clean(root)
    catalog.images[1].file = "truncated.png"  # decodes badly: not looked at
    catalog.images[1].width = W + 10  # differs from the real size: not looked at
    catalog.images[2].annotations[0].bbox = (0.0, 0.0, W + 5.0, 10.0)  # size 0: header read
    catalog.images[1].mask_file = "gone_mask.png"
    faults = _faults(catalog, verify_images=False)
    assert [(f.record, f.field) for f in faults] == [
        ("image 2", "mask_file"),
        ("annotation 3", "bbox"),
    ]


def test_strict_mode_raises_the_first_fault(root):
    catalog = _clean(root)
    catalog.images[0].file = "truncated.png"
    catalog.images[2].id = 2  # catalog-wide faults come first
    with pytest.raises(DataError, match="image id 2 is used by 2 images"):
        check_catalog(catalog, Problems(strict=True))
    catalog.images[2].id = 3
    with pytest.raises(ImageError) as raised:
        check_catalog(catalog, Problems(strict=True))
    assert (raised.value.record, raised.value.field) == ("image 1", "file")


def test_parallel_verification_reports_in_catalog_order(root, capsys):
    catalog = _clean(root)
    catalog.images = [
        ImageRecord(name, W, H, i, label=1)
        for i, name in enumerate(["truncated.png", "a.png", "gone.png"] * 20)
    ]
    one = [str(f) for f in _faults(catalog, workers=1)]
    many = [str(f) for f in _faults(catalog, workers=4)]
    assert one == many and len(one) == 40
    assert "truncated.png" in one[0] and "gone.png" in one[1]
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


def test_large_catalog_checks_fast_without_verification(root):
    boxes = [Annotation((1.0, 2.0, 30.0, 20.0), 1, id=0) for _ in range(4)]
    images = [ImageRecord("a.png", W, H, i, annotations=list(boxes)) for i in range(5000)]
    catalog = Catalog(root, [Category(1, "circle")], images)
    start = time.perf_counter()
    assert _faults(catalog, verify_images=False) == []
    assert time.perf_counter() - start < 0.5


@pytest.fixture
def coco(root, tmp_path) -> Path:
    """A COCO dataset on disk: a clean ``train`` split and a ``val`` split with one bad box."""
    out = tmp_path / "coco"
    write_catalog(_clean(root), out, "coco", "train")
    faulty = _clean(root)
    _annotation(faulty, 0, 1).bbox = (20.0, 5.0, 10.0, 20.0)
    write_catalog(faulty, out, "coco", "val")
    return out


def test_check_dataset_collects_the_faults_of_every_split(coco):
    faults = check_dataset(coco)
    assert [(Path(f.file).name, f.record, f.field) for f in faults] == [
        ("val.json", "annotation 2", "bbox")
    ]
    assert check_dataset(coco, "train") == []
    assert [str(f) for f in check_dataset(coco / "val.json", verify_images=False)] == [
        str(f) for f in faults
    ]


def test_load_checked_returns_a_clean_split_and_raises_on_a_faulty_one(coco):
    assert len(load_checked(coco, "train")) == 3
    with pytest.raises(DataError, match="negative width"):
        load_checked(coco, "val")


def test_load_checked_drops_zero_area_boxes_with_one_warning_that_counts_them(root, tmp_path):
    catalog = _clean(root)
    _annotation(catalog, 0, 1).bbox = (5.0, 5.0, 20.0, 5.0)
    _annotation(catalog, 2, 0).bbox = (7.0, 3.0, 7.0, 9.0)
    before = sum(len(r.annotations) for r in catalog)
    write_catalog(catalog, tmp_path / "coco", "coco", "train")
    with pytest.warns(
        UserWarning, match=r"dropped 2 box\(es\) of zero area \(the first: annotation 2\)"
    ):
        loaded = load_checked(tmp_path / "coco", "train")
    assert sum(len(r.annotations) for r in loaded) == before - 2
    assert all(
        a.bbox[2] > a.bbox[0] and a.bbox[3] > a.bbox[1] for r in loaded for a in r.annotations
    )
