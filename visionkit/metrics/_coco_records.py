"""Read a COCO ground-truth dataset and a COCO results list into flat evaluation arrays.

Both arrive as JSON (a file path or the parsed object). Every record is checked, column by
column with numpy, so a 100,000-record results list costs tens of milliseconds; the first
bad record is named in a :class:`~visionkit.errors.DataError` (file, ``prediction 17`` or
``annotation 5``, field). Values are read the way pycocotools reads them: ``xywh`` boxes in
float64, a detection's area is ``w * h`` when results carry boxes and the mask area when
they carry only masks (pycocotools decides on the first record), polygons and uncompressed
RLE are rasterised at the image's size, ground truth's ``area`` field decides its area range.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.errors import DataError
from visionkit.metrics._coco_match import Instances
from visionkit.ops.masks import rle_area, segmentation_to_rle

_REQUIRED = object()


@dataclass(frozen=True)
class GroundTruth:
    """A COCO dataset read for evaluation.

    Attributes:
        objects: The annotations as :class:`Instances` (with ``crowd``).
        image_ids: ``[I]`` sorted ids of the dataset's images (all are evaluated).
        category_ids: ``[K]`` sorted ids of its categories.
        difficult: ``[G]`` bool VOC ``difficult`` flag of each annotation (absent: False).
        sizes: Image id -> ``(height, width)``, where the image gives them.
    """

    objects: Instances
    image_ids: np.ndarray
    category_ids: np.ndarray
    difficult: np.ndarray
    sizes: dict[int, tuple[int, int]]


def load_json(source: Any, what: str) -> tuple[Any, str | None]:
    """``(parsed object, file name)`` of a JSON file path, or ``(source, None)`` for an object."""
    if not isinstance(source, str | Path):
        return source, None
    try:
        with open(source, encoding="utf-8") as stream:
            return json.load(stream), str(source)
    except FileNotFoundError:
        raise DataError(f"no such {what} file", file=source) from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"not valid JSON: {error.msg}", file=source, record=f"line {error.lineno}"
        ) from None
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text: {error.reason}", file=source) from None


def read_ground_truth(dataset: Any, *, file: str | None, iou_type: str) -> GroundTruth:
    """Check a COCO dataset dict and turn it into :class:`GroundTruth`.

    Raises:
        DataError: A section is missing or not a list; a record is not an object; an id is
            not an integer or repeated; an annotation names an unknown image or category;
            a box is not 4 finite numbers with non-negative size; ``area`` is not a finite
            number; a ``segm`` annotation has no usable segmentation.
    """
    if not isinstance(dataset, Mapping):
        raise DataError(f"must be a COCO dataset object, not {_kind(dataset)}", file=file)
    images = _records(dataset, "images", "image", file)
    categories = _records(dataset, "categories", "category", file)
    annotations = _records(dataset, "annotations", "annotation", file, required=False)
    image_ids = _unique_ids(images, "image", file)
    category_ids = _unique_ids(categories, "category", file)
    sizes = {
        int(im["id"]): (int(im["height"]), int(im["width"]))
        for im in images
        if _is_number(im.get("height")) and _is_number(im.get("width"))
    }
    name = _annotation_name(annotations)
    table = _Table(annotations, name, file)
    image = table.ids("image_id", image_ids, "image")
    category = table.ids("category_id", category_ids, "category")
    crowd = table.flags("iscrowd")
    masks = None
    if iou_type == "segm":
        masks = _masks(table, image, sizes)
        boxes = table.boxes(default=np.zeros(4))
        area = table.numbers("area", default=lambda i: rle_area(masks[i]))
    else:
        boxes = table.boxes()
        area = table.numbers("area", default=lambda i: boxes[i, 2] * boxes[i, 3])
    objects = Instances(image, category, boxes, area, crowd=crowd, masks=masks)
    return GroundTruth(objects, image_ids, category_ids, table.flags("difficult"), sizes)


def read_results(results: Any, gt: GroundTruth, *, file: str | None, iou_type: str) -> Instances:
    """Check a COCO results list against the ground truth and turn it into :class:`Instances`.

    Raises:
        DataError: The results are not a list; a record is not an object; a field is
            missing; an id is not an integer or not in the ground truth; a score or a
            coordinate is not a finite number; a box has negative width or height; a
            ``segm`` result has no usable segmentation.
    """
    if not isinstance(results, list):
        raise DataError(f"results must be a list of objects, not {_kind(results)}", file=file)
    _check_objects(results, lambda i: f"prediction {i}", file)
    table = _Table(results, lambda i: f"prediction {i}", file)
    image = table.ids("image_id", gt.image_ids, "image")
    category = table.ids("category_id", gt.category_ids, "category")
    score = table.numbers("score")
    if iou_type == "bbox":
        boxes = table.boxes()
        return Instances(image, category, boxes, boxes[:, 2] * boxes[:, 3], score=score)
    masks = _masks(table, image, gt.sizes)
    box_areas = bool(results) and bool(results[0].get("bbox"))  # pycocotools' loadRes rule
    boxes = table.boxes() if box_areas else np.zeros((len(results), 4))
    area = boxes[:, 2] * boxes[:, 3] if box_areas else np.array([rle_area(m) for m in masks])
    return Instances(image, category, boxes, area, score=score, masks=masks)


class _Table:
    """Columns of a list of JSON records, checked vectorised; the first bad one is named."""

    def __init__(self, records: list, name: Callable[[int], str], file: str | None) -> None:
        self.records, self.name, self.file = records, name, file

    def fail(self, index: int, field: str, message: str) -> DataError:
        """The error for ``field`` of record ``index``."""
        return DataError(message, file=self.file, record=self.name(index), field=field)

    def column(self, field: str, default: Any = _REQUIRED) -> list:
        """``field`` of every record; a missing one is an error unless ``default`` is given."""
        if default is not _REQUIRED:
            return [r.get(field, default) for r in self.records]
        try:
            return [r[field] for r in self.records]
        except KeyError:
            index = next(i for i, r in enumerate(self.records) if field not in r)
            raise self.fail(index, field, "missing") from None

    def ids(self, field: str, known: np.ndarray, kind: str) -> np.ndarray:
        """``[n]`` int64 ids, each one of the sorted ``known`` ids."""
        ids = self.checked(field, self.column(field), _as_integers, "an integer")
        position = np.minimum(np.searchsorted(known, ids), max(len(known) - 1, 0))
        unknown = np.flatnonzero(known[position] != ids) if len(known) else np.arange(len(ids))
        if len(unknown):
            index = int(unknown[0])
            raise self.fail(index, field, f"{kind} id {ids[index]} is not in the ground truth")
        return ids

    def numbers(self, field: str, default: Callable[[int], float] | None = None) -> np.ndarray:
        """``[n]`` finite float64 values; ``default(index)`` fills missing ones if given."""
        if default is None:
            values = self.column(field)
        else:
            values = self.column(field, None)
            values = [default(i) if v is None else v for i, v in enumerate(values)]
        return self.finite(field, self.checked(field, values, _as_floats, "a number"))

    def flags(self, field: str) -> np.ndarray:
        """``[n]`` bool flags from 0/1 values (absent: 0)."""
        return self.checked(field, self.column(field, 0), _as_flags, "0 or 1")

    def boxes(self, default: np.ndarray | None = None) -> np.ndarray:
        """``[n, 4]`` finite float64 ``xywh`` boxes with non-negative width and height."""
        values = self.column("bbox") if default is None else self.column("bbox", default)
        boxes = self.finite("bbox", self.checked("bbox", values, _as_boxes, "[x, y, w, h]"))
        negative = np.flatnonzero((boxes[:, 2:] < 0).any(axis=1))
        if len(negative):
            index = int(negative[0])
            raise self.fail(index, "bbox", f"width and height must be >= 0: {values[index]!r}")
        return boxes

    def checked(
        self, field: str, values: list, convert: Callable[[list], np.ndarray | None], what: str
    ) -> np.ndarray:
        """``convert(values)``; when it fails, the error names the first value it rejects."""
        array = convert(values)
        if array is None:
            index = next((i for i, v in enumerate(values) if convert([v]) is None), 0)
            raise self.fail(index, field, f"must be {what}, not {values[index]!r}")
        return array

    def finite(self, field: str, array: np.ndarray) -> np.ndarray:
        """``array`` (``[n]`` or ``[n, 4]``) if all finite, else the error for the first row."""
        finite = np.isfinite(array)
        bad = np.flatnonzero(~(finite.all(axis=1) if finite.ndim == 2 else finite))
        if len(bad):
            value = array[bad[0]].tolist()
            raise self.fail(int(bad[0]), field, f"must be finite, not {value}")
        return array


def _masks(table: _Table, image: np.ndarray, sizes: dict) -> list[dict[str, Any]]:
    """Compressed RLE of every record's ``segmentation``, as pycocotools' ``annToRLE``."""
    masks = []
    for index, (segmentation, image_id) in enumerate(
        zip(table.column("segmentation"), image.tolist(), strict=True)
    ):
        if isinstance(segmentation, list) and image_id not in sizes:
            raise table.fail(
                index, "segmentation", f"polygons need the height and width of image {image_id}"
            )
        height, width = sizes.get(image_id, (0, 0))
        try:
            masks.append(segmentation_to_rle(segmentation, height, width))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
            raise table.fail(index, "segmentation", f"not polygons or RLE: {error}") from None
    return masks


def _records(doc: Mapping, key: str, kind: str, file: str | None, required: bool = True) -> list:
    """``doc[key]``, checked to be a list of objects."""
    if key not in doc and not required:
        return []
    value = doc.get(key)
    if not isinstance(value, list):
        raise DataError(f"must be a list, not {_kind(value)}", file=file, field=key)
    _check_objects(value, lambda i: f"{kind} at index {i}", file)
    return value


def _check_objects(items: list, name: Callable[[int], str], file: str | None) -> None:
    """Raise for the first item that is not a JSON object (``dict``: a Mapping check costs
    ten times more, on lists of 100,000 records)."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"must be an object, not {_kind(item)}", file=file, record=name(index))


def _unique_ids(records: list, kind: str, file: str | None) -> np.ndarray:
    """Sorted ``id`` of each record; a missing, non-integer or repeated id is an error."""
    table = _Table(records, lambda i: f"{kind} at index {i}", file)
    ids = table.checked("id", table.column("id"), _as_integers, "an integer")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = int(unique[np.argmax(counts > 1)])
        index = int(np.flatnonzero(ids == repeated)[1])
        raise table.fail(index, "id", f"{kind} id {repeated} is used twice")
    return unique


def _annotation_name(annotations: list) -> Callable[[int], str]:
    def name(index: int) -> str:
        value = annotations[index].get("id")
        return f"annotation {int(value)}" if _is_integer(value) else f"annotation at index {index}"

    return name


def _as_numbers(values: list, shape: tuple[int, ...]) -> np.ndarray | None:
    """The values as a numeric (int, uint or float) array of ``shape``, or None when some
    value is not a number (strings, booleans, nulls, nested lists of the wrong length)."""
    try:
        array = np.asarray(values) if values else np.zeros(shape)
    except (TypeError, ValueError):
        return None
    return array if array.shape == shape and array.dtype.kind in "iuf" else None


def _as_floats(values: list) -> np.ndarray | None:
    array = _as_numbers(values, (len(values),))
    return None if array is None else array.astype(np.float64, copy=False)


def _as_boxes(values: list) -> np.ndarray | None:
    array = _as_numbers(values, (len(values), 4))
    return None if array is None else array.astype(np.float64, copy=False)


def _as_integers(values: list) -> np.ndarray | None:
    """int64 array of whole numbers (``3.0`` included), or None."""
    array = _as_numbers(values, (len(values),))
    if array is None or array.dtype.kind in "iu":
        return None if array is None else array.astype(np.int64)
    whole = np.isfinite(array) & (np.abs(array) < 2**53) & (array == np.round(array))
    return array.astype(np.int64) if whole.all() else None


def _as_flags(values: list) -> np.ndarray | None:
    """bool array of 0/1 values (``True``/``False`` included), or None."""
    try:
        array = np.asarray(values) if values else np.zeros(0, bool)
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
        return None
    return array.astype(bool)


def _is_number(value: Any) -> bool:
    # JSON true/false parse as bool, which Python counts as int: they are not numbers here.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    """Whole numbers, including ``3.0`` (some tools write every number as a float)."""
    return _is_number(value) and float(value).is_integer()


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
