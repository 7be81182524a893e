"""COCO detection and instance-segmentation JSON: one file per split.

Layout written (and the one :func:`splits` finds in a folder)::

    <out>/<split>.json            images, annotations, categories, info, licenses
    <out>/images/<split>/<name>   the images; ``file_name`` is "images/<split>/<name>"

``file_name`` resolves against the ``images`` folder when one is given, else against the
JSON's own folder. Boxes are ``xywh`` in the file and ``xyxy`` in the catalog; category
ids are kept as they are (COCO's have gaps). The reader checks syntax only: a record with
a missing field, a non-numeric value or an unknown ``image_id`` is reported and skipped;
what values mean (negative sizes, unknown categories, duplicate ids) is left to
:mod:`visionkit.data.check`, so such values are kept as they are.

An annotation without a segmentation is written with its box as a one-polygon
segmentation, pycocotools' own convention for box results (``COCO.loadRes``), so
``COCO.annToMask`` works on every annotation we write; reading the file back gives that
polygon. VOC's ``difficult`` flag, which COCO lacks, is written as an extra
``"difficult": 1`` (pycocotools ignores unknown keys) and read back, so it survives a
VOC -> COCO -> VOC conversion.

This module also holds the helpers that every image-folder writer shares:
:func:`split_image_names`, :func:`record_size`, :func:`require_image_files`,
:func:`require_known_categories` and :func:`box_polygon`.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.data.formats._files import place_file, write_text_atomic
from visionkit.data.formats._problems import Problems
from visionkit.data.formats._writing import (
    box_polygon,
    record_size,
    require_image_files,
    split_image_names,
)
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord, Segmentation
from visionkit.errors import DataError
from visionkit.ops.boxes import box_area, box_convert
from visionkit.ops.masks import rle_area, segmentation_to_rle

__all__ = ["detect", "read", "splits", "write"]

_SECTIONS = ("images", "annotations", "categories")


def detect(path: Path) -> bool:
    """Whether ``path`` is a ``.json`` file, or a folder holding COCO JSON files."""
    if path.is_dir():
        return bool(_coco_files(path))
    return path.is_file() and path.suffix.lower() == ".json"


def splits(path: Path) -> list[str]:
    """Splits at ``path``: a JSON file's stem, or the stems of a folder's COCO JSON files."""
    if path.is_dir():
        return [p.stem for p in _coco_files(path)]
    return [path.stem]


def read(path: Path, split: str, problems: Problems, images: Path | None = None) -> Catalog:
    """Read one COCO split.

    Args:
        path: The split's JSON file, or the folder holding ``<split>.json``.
        split: Split name; used only when ``path`` is a folder.
        problems: Where malformed records go (strict mode raises the first).
        images: Folder that ``file_name`` resolves against; None means the JSON's folder.

    Returns:
        The split's catalog (``source`` is the JSON file), without the skipped records;
        empty when the file is not JSON or its top level is not an object.

    Raises:
        DataError: in strict mode, the first malformed record, naming file, record and field.
    """
    json_path = path / f"{split}.json" if path.is_dir() else path
    catalog = Catalog(images or json_path.parent, [], [], source=json_path)
    doc = _load(json_path, problems)
    if doc is None:
        return catalog
    sections = {key: _section(doc, key, json_path, problems) for key in _SECTIONS}
    catalog.categories = _parse_records(
        sections["categories"], "category", _category, json_path, problems
    )
    catalog.images = _parse_records(sections["images"], "image", _image, json_path, problems)
    by_id = {record.id: record for record in catalog.images}
    parse = partial(_annotation, by_id=by_id)
    annotations = _parse_records(sections["annotations"], "annotation", parse, json_path, problems)
    _attach(annotations, by_id)
    return catalog


def write(catalog: Catalog, out: Path, split: str) -> Path:
    """Write ``catalog`` as ``<out>/<split>.json`` with its images under ``images/<split>/``.

    Floats are written at full precision, segmentations as given; ``area`` is the
    annotation's own, else the segment's pixel count, else the box area. Other splits'
    files in ``out`` are left alone.

    Args:
        catalog: The split to write.
        out: Dataset folder (created when missing).
        split: Split name: the JSON's stem and the image subfolder.

    Returns:
        The JSON file written.

    Raises:
        ImageError: an image file is missing, or has no recorded size and an unreadable
            header.
    """
    require_image_files(catalog)
    images, annotations = [], []
    for record, name in zip(catalog, split_image_names(catalog), strict=True):
        place_file(catalog.image_path(record), out / "images" / split / name)
        width, height = record_size(catalog, record)
        images.append(
            {
                "id": record.id,
                "file_name": f"images/{split}/{name}",
                "width": width,
                "height": height,
            }
        )
        annotations += _annotation_entries(record, width, height)
    doc = {
        "info": {"description": f"split {split!r}, written by visionkit"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": c.supercategory}
            for c in catalog.categories
        ],
    }
    json_path = out / f"{split}.json"
    write_text_atomic(json_path, json.dumps(doc))
    return json_path


# ---------------------------------------------------------------------------- reading


_SPLIT_STEMS = frozenset({"train", "val", "valid", "test"})
"""JSON files with these stems are splits even when unreadable, so a broken one is reported."""


def _coco_files(folder: Path) -> list[Path]:
    """The JSON files in ``folder`` that are COCO splits, sorted by name.

    A file counts when it looks like COCO, or when it is named like a split: a malformed
    ``val.json`` must be reported by the checks, not passed over as "some other JSON".
    """
    files = folder.glob("*.json")
    return sorted(p for p in files if p.stem.lower() in _SPLIT_STEMS or _looks_like_coco(p))


def _looks_like_coco(path: Path) -> bool:
    """Whether the file mentions both ``"images"`` and ``"annotations"`` keys.

    A substring search over a memory map: detecting a format must stay fast on a
    half-gigabyte COCO file, which ``json.load`` is not.
    """
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b'"images"') >= 0 and m.find(b'"annotations"') >= 0
    except (OSError, ValueError):  # unreadable, or empty (mmap refuses zero bytes)
        return False


def _load(json_path: Path, problems: Problems) -> dict | None:
    """The parsed top-level object, or None (reported) when there is none."""
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add("no such file", file=json_path)
        return None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        problems.add(f"not valid JSON: {error.msg}", file=json_path, record=where)
        return None
    except UnicodeDecodeError as error:
        problems.add(
            f"not UTF-8 text: {error.reason}", file=json_path, record=f"byte {error.start}"
        )
        return None
    if not isinstance(doc, dict):
        problems.add(f"the top level must be an object, not {_kind(doc)}", file=json_path)
        return None
    return doc


def _section(doc: dict, key: str, json_path: Path, problems: Problems) -> list:
    """``doc[key]`` as a list; a missing or non-list section is reported and read as empty."""
    value = doc.get(key)
    if value is None:
        problems.add("missing", file=json_path, field=key)
        return []
    if not isinstance(value, list):
        problems.add(f"must be a list, not {_kind(value)}", file=json_path, field=key)
        return []
    return value


def _parse_records(
    items: list, kind: str, parse: Callable[[dict], Any], json_path: Path, problems: Problems
) -> list:
    """``parse`` every item, reporting and skipping the ones it rejects.

    ``parse`` raises :class:`DataError` with the ``field`` at fault; the record name is
    ``"<kind> <id>"``, or ``"<kind> at index <i>"`` when the id itself is unusable.
    """
    parsed = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise DataError(f"must be an object, not {_kind(item)}")
            parsed.append(parse(item))
        except DataError as fault:
            problems.add(
                fault.message,
                file=json_path,
                record=_record_name(kind, item, index),
                field=fault.field,
            )
    return parsed


def _record_name(kind: str, item: Any, index: int) -> str:
    if isinstance(item, dict) and _is_integer(item.get("id")):
        return f"{kind} {int(item['id'])}"
    return f"{kind} at index {index}"


def _category(item: dict) -> Category:
    supercategory = item.get("supercategory", "")
    if not isinstance(supercategory, str):
        raise DataError(f"must be a string, not {_kind(supercategory)}", field="supercategory")
    return Category(_integer(item, "id"), _string(item, "name"), supercategory)


def _image(item: dict) -> ImageRecord:
    return ImageRecord(
        file=_string(item, "file_name"),
        width=_integer(item, "width"),
        height=_integer(item, "height"),
        id=_integer(item, "id"),
    )


def _annotation(item: dict, by_id: dict[int, ImageRecord]) -> tuple[int, Annotation]:
    """``(image_id, annotation)`` with the box still ``xywh`` (converted in bulk later)."""
    ann_id = _integer(item, "id")
    image_id = _integer(item, "image_id")
    if image_id not in by_id:
        raise DataError(f"no valid image has id {image_id}", field="image_id")
    area = item.get("area")
    if area is not None and not _is_number(area):
        raise DataError(f"must be a number, not {_kind(area)}", field="area")
    return image_id, Annotation(
        bbox=_bbox(item),
        category_id=_integer(item, "category_id"),
        id=ann_id,
        iscrowd=bool(_integer(item, "iscrowd", default=0)),
        difficult=bool(_integer(item, "difficult", default=0)),
        segmentation=_segmentation(item.get("segmentation")),
        area=None if area is None else float(area),
    )


def _attach(annotations: list[tuple[int, Annotation]], by_id: dict[int, ImageRecord]) -> None:
    """Convert every box from ``xywh`` to ``xyxy`` at once and give each image its objects."""
    xywh = np.array([a.bbox for _, a in annotations], dtype=np.float64).reshape(-1, 4)
    for (image_id, annotation), box in zip(
        annotations, box_convert(xywh, "xywh", "xyxy").tolist(), strict=True
    ):
        annotation.bbox = tuple(box)
        by_id[image_id].annotations.append(annotation)


def _bbox(item: dict) -> tuple[float, float, float, float]:
    value = item.get("bbox")
    if value is None:
        raise DataError("missing", field="bbox")
    if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
        raise DataError(f"must be 4 numbers [x, y, width, height], not {value!r}", field="bbox")
    return tuple(float(v) for v in value)


def _segmentation(value: Any) -> Segmentation | None:
    """Polygons or an RLE dict, syntax checked; None when the annotation has none."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(p, list) and all(map(_is_number, p)) for p in value):
            raise DataError("polygons must be lists of numbers", field="segmentation")
        return [[float(v) for v in polygon] for polygon in value]
    if isinstance(value, dict):
        size, counts = value.get("size"), value.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_integer, size))):
            raise DataError("RLE 'size' must be [height, width]", field="segmentation")
        if not (
            isinstance(counts, str) or (isinstance(counts, list) and all(map(_is_integer, counts)))
        ):
            raise DataError(
                "RLE 'counts' must be a string or a list of integers", field="segmentation"
            )
        return {"size": [int(s) for s in size], "counts": counts}
    raise DataError(f"must be polygons or an RLE object, not {_kind(value)}", field="segmentation")


_REQUIRED = object()


def _integer(item: dict, key: str, default: Any = _REQUIRED) -> int:
    value = item.get(key, default)
    if value is _REQUIRED:
        raise DataError("missing", field=key)
    if not _is_integer(value):
        raise DataError(f"must be an integer, not {value!r}", field=key)
    return int(value)


def _string(item: dict, key: str) -> str:
    value = item.get(key)
    if value is None:
        raise DataError("missing", field=key)
    if not isinstance(value, str):
        raise DataError(f"must be a string, not {value!r}", field=key)
    return value


def _is_number(value: Any) -> bool:
    # JSON true/false parse as bool, which Python counts as int: they are not numbers here.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    """Whole numbers, including ``640.0`` (some tools write every number as a float)."""
    return _is_number(value) and float(value).is_integer()


def _kind(value: Any) -> str:
    """JSON's name for the type of a parsed value."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null" if value is None else "a number")


# ---------------------------------------------------------------------------- writing


def _annotation_entries(record: ImageRecord, width: int, height: int) -> list[dict]:
    """The JSON annotations of one image, boxes converted to ``xywh`` in one call."""
    xyxy = np.array([a.bbox for a in record.annotations], dtype=np.float64).reshape(-1, 4)
    entries = []
    for annotation, xywh in zip(
        record.annotations, box_convert(xyxy, "xyxy", "xywh").tolist(), strict=True
    ):
        segmentation = annotation.segmentation
        entry = {
            "id": annotation.id,
            "image_id": record.id,
            "category_id": annotation.category_id,
            "bbox": xywh,
            "area": _area(annotation, height, width),
            "iscrowd": int(annotation.iscrowd),
            "segmentation": [box_polygon(annotation.bbox)]
            if segmentation is None
            else segmentation,
        }
        if annotation.difficult:
            entry["difficult"] = 1
        entries.append(entry)
    return entries


def _area(annotation: Annotation, height: int, width: int) -> float:
    """The annotation's own area, else its segment's pixel count, else its box area."""
    if annotation.area is not None:
        return annotation.area
    segmentation = annotation.segmentation
    # Polygons of fewer than 3 points cannot be rasterised (data check reports them).
    if isinstance(segmentation, dict) or (
        segmentation and all(len(polygon) >= 6 for polygon in segmentation)
    ):
        return rle_area(segmentation_to_rle(segmentation, height, width))
    return float(box_area(np.asarray(annotation.bbox, dtype=np.float64)))
