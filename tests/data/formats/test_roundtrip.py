"""Converting between COCO, YOLO and VOC keeps every box, category and flag the formats hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionkit.data.formats import detect_format, read_catalog, write_catalog
from visionkit.data.formats._writing import box_polygon
from visionkit.data.records import Annotation, Catalog, Category
from visionkit.errors import ImageError
from visionkit.ops.masks import polygons_to_rle, rle_area

BOX_TOLERANCE = 1e-3  # pixels


def _convert(catalog: Catalog, tmp_path: Path, *formats: str) -> Catalog:
    """Write ``catalog`` in each format in turn, reading it back after each write."""
    for step, name in enumerate(formats):
        written = write_catalog(catalog, tmp_path / f"{step}-{name}", name, split="train")
        assert detect_format(written) == name
        catalog = read_catalog(written, "train")
    return catalog


def _assert_same_objects(expected: Catalog, actual: Catalog, *, difficult: bool) -> None:
    """Same images in order, same objects: boxes within tolerance, same category id and
    name (and the same difficult flags when the formats between keep them)."""
    assert len(actual) == len(expected)
    for want, got in zip(expected, actual, strict=True):
        assert (got.width, got.height) == (want.width, want.height)
        assert len(got.annotations) == len(want.annotations)
        for a, b in zip(want.annotations, got.annotations, strict=True):
            assert b.bbox == pytest.approx(a.bbox, abs=BOX_TOLERANCE, rel=0)
            assert (b.category_id, actual.names[b.category_id]) == (
                a.category_id,
                expected.names[a.category_id],
            )
            if difficult:
                assert b.difficult == a.difficult


def test_coco_write_then_read_is_exact(detection_catalog: Catalog, tmp_path: Path) -> None:
    back = _convert(detection_catalog, tmp_path, "coco")
    assert back.categories == detection_catalog.categories
    for want, got in zip(detection_catalog, back, strict=True):
        assert (got.file, got.width, got.height, got.id) == (
            f"images/train/{want.file}",
            want.width,
            want.height,
            want.id,
        )
        for a, b in zip(want.annotations, got.annotations, strict=True):
            # A box-only object is written with its box as its polygon; the written area is
            # the box's, or the polygon's pixel count as pycocotools rasterises it.
            polygons = a.segmentation or [box_polygon(a.bbox)]
            x1, y1, x2, y2 = a.bbox
            area = (
                (x2 - x1) * (y2 - y1)
                if a.segmentation is None
                else rle_area(polygons_to_rle(polygons, want.height, want.width))
            )
            assert b == Annotation(
                a.bbox, a.category_id, a.id, a.iscrowd, a.difficult, polygons, area
            )


@pytest.mark.parametrize("via", ["coco", None], ids=["segments", "boxes"])
def test_coco_to_yolo_to_coco(detection_catalog: Catalog, tmp_path: Path, via: str | None) -> None:
    """Through COCO first every object has a polygon (YOLO's segment format); straight from
    the catalog some have none (YOLO's detection format). Both keep every box."""
    source = _convert(detection_catalog, tmp_path / "first", via) if via else detection_catalog
    back = _convert(source, tmp_path, "yolo", "coco")
    label = (tmp_path / "0-yolo" / "labels" / "train" / "000001.txt").read_text()
    assert len(label.splitlines()[0].split()) == (9 if via else 5)  # 4-point polygon or box
    _assert_same_objects(detection_catalog, back, difficult=False)
    assert back.categories == [Category(c.id, c.name) for c in detection_catalog.categories]


def test_coco_to_voc_to_coco(detection_catalog: Catalog, tmp_path: Path) -> None:
    back = _convert(detection_catalog, tmp_path, "voc")
    _assert_same_objects(detection_catalog, back, difficult=True)
    assert sum(a.difficult for r in back for a in r.annotations) > 0
    back = _convert(detection_catalog, tmp_path / "coco-first", "coco", "voc", "coco")
    _assert_same_objects(detection_catalog, back, difficult=True)


@pytest.mark.parametrize("name", ["coco", "yolo", "voc"])
def test_missing_image_stops_a_write_before_it_starts(
    detection_catalog: Catalog, tmp_path: Path, name: str
) -> None:
    (detection_catalog.root / "000007.png").unlink()
    with pytest.raises(ImageError, match=r"000007\.png: image 7: field 'file': no such image"):
        write_catalog(detection_catalog, tmp_path / "out", name)
    assert list((tmp_path / "out").iterdir()) == []
