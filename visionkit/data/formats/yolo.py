"""YOLO labels in the Ultralytics layout: a ``data.yaml`` and one text file per image.

Layout written, the one Ultralytics trains on::

    <out>/data.yaml                    path: ., train: images/train, names: {0: circle, ...}
    <out>/images/<split>/<name>
    <out>/labels/<split>/<stem>.txt    one line per object

A label line is ``class cx cy w h`` (detection) or ``class x1 y1 x2 y2 ...`` (a segment's
polygon), normalised to 0-1 by the image size and written with 6 decimals, which keeps a
box within ``7.5e-7`` of the image side (1e-3 px up to 1,333 px). ``class`` is the
category's position in the catalog; on reading, category ids are ``class + 1`` and the
names are kept, so a catalog with ids ``1..K`` in order survives a round trip.

The writer uses the segment format when every annotation has a segmentation, the
detection format otherwise. One line holds one polygon, so an RLE mask is traced
(:func:`~visionkit.ops.masks.mask_to_polygons`) and an object of several parts is joined
into one ring by zero-width bridges (:func:`~visionkit.ops.masks.merge_polygons`), as
Ultralytics' converter does; holes are lost. Readers take the polygon's extent as the
box, so the ring is fitted to the annotation's box before writing: boxes survive to the
label file's 6 decimals. A segmentation that traces to nothing is written as its box.

The reader follows Ultralytics: a split entry of ``data.yaml`` is an image folder, a text
file listing images, or a list of those, relative to ``path:`` (itself relative to the
YAML's folder, never to a global datasets folder); an image's label file is its path
with the last ``/images/`` replaced by ``/labels/`` and the suffix by ``.txt``; an image
without one has no objects. Image sizes come from the file headers, EXIF orientation
applied. A class index outside ``names`` is kept (:mod:`visionkit.data.check` reports it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visionkit.data.formats._files import place_file, write_text_atomic
from visionkit.data.formats._problems import Problems
from visionkit.data.formats._writing import (
    box_polygon,
    record_size,
    require_image_files,
    require_known_categories,
    split_image_names,
)
from visionkit.data.images import image_size
from visionkit.data.records import Annotation, Catalog, Category, ImageRecord
from visionkit.errors import DataError, ImageError
from visionkit.ops.boxes import box_convert, denormalize_boxes, normalize_boxes
from visionkit.ops.masks import (
    fit_polygon_to_box,
    mask_to_polygons,
    merge_polygons,
    segmentation_to_mask,
)

__all__ = ["detect", "read", "splits", "write"]

# What a split folder is searched for: the image formats Ultralytics looks for (its
# IMG_FORMATS) that Pillow reads, so we list the images Ultralytics would train on.
_IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})

_STANDARD_SPLITS = ("train", "val", "test")
# data.yaml keys that are settings, not splits (Ultralytics' dataset keys).
_SETTINGS = frozenset({"path", "names", "nc", "download", "kpt_shape", "flip_idx", "channels"})
_BOX_FIELDS = ("class", "cx", "cy", "w", "h")


def detect(path: Path) -> bool:
    """Whether ``path`` is a ``.yaml`` file, or a folder whose ``data.yaml`` has ``names``."""
    if path.is_file():
        return path.suffix.lower() in (".yaml", ".yml")
    yaml_path = path / "data.yaml"
    return yaml_path.is_file() and "names" in (_load(yaml_path, Problems(strict=False)) or {})


def splits(path: Path) -> list[str]:
    """The splits ``data.yaml`` names: train, val and test first, then any others."""
    return _split_keys(_load(_yaml_path(path), Problems(strict=False)) or {})


def read(path: Path, split: str, problems: Problems, images: Path | None = None) -> Catalog:
    """Read one split of a YOLO dataset.

    Args:
        path: The ``data.yaml`` file, or the folder holding it.
        split: The ``data.yaml`` key of the split (``"train"``, ``"val"``...).
        problems: Where malformed files and lines go (strict mode raises the first).
        images: Ignored: ``data.yaml`` says where the images are.

    Returns:
        The split's catalog: ``root`` is the dataset folder (``path:``), ``source`` the
        YAML; image and annotation ids count from 1 in listing order.

    Raises:
        DataError: in strict mode, the first fault, naming file, record and field
            (:class:`~visionkit.errors.ImageError` for an image whose header is unreadable).
    """
    yaml_path = _yaml_path(path).absolute()
    catalog = Catalog(yaml_path.parent, [], [], source=yaml_path)
    doc = _load(yaml_path, problems)
    names = None if doc is None else _names(doc, yaml_path, problems)
    if names is None:
        return catalog
    catalog.root = yaml_path.parent / str(doc.get("path") or ".")
    catalog.categories = [Category(index + 1, name) for index, name in names.items()]
    image_files, folders = _split_files(doc, split, catalog.root, yaml_path, problems)
    labels = [_label_path(image) for image in image_files]
    for image_id, (image, label) in enumerate(zip(image_files, labels, strict=True), start=1):
        record = _image_record(image, label, image_id, catalog.root, problems)
        if record is not None:
            catalog.images.append(record)
    _report_orphans(folders, set(labels), problems)
    annotations = (a for record in catalog.images for a in record.annotations)
    for annotation_id, annotation in enumerate(annotations, start=1):
        annotation.id = annotation_id
    return catalog


def write(catalog: Catalog, out: Path, split: str) -> Path:
    """Write ``catalog`` as split ``split`` of the YOLO dataset in ``out``.

    ``data.yaml`` keeps the other splits it already lists and gains this one.

    Args:
        catalog: The split to write.
        out: Dataset folder (created when missing).
        split: Split name: the ``data.yaml`` key and the image and label subfolders.

    Returns:
        The ``data.yaml`` written.

    Raises:
        DataError: ``data.yaml`` already lists other class names, or an annotation's
            category is not in ``catalog.categories``
            (:class:`~visionkit.errors.ImageError` for a missing image file).
    """
    require_image_files(catalog)
    require_known_categories(catalog)
    yaml_path = out / "data.yaml"
    doc = _merged_yaml(yaml_path, split, [c.name for c in catalog.categories])
    annotations = [a for record in catalog for a in record.annotations]
    segment = bool(annotations) and all(a.segmentation is not None for a in annotations)
    for record, name in zip(catalog, split_image_names(catalog), strict=True):
        place_file(catalog.image_path(record), out / "images" / split / name)
        lines = _label_lines(catalog, record, segment)
        label = out / "labels" / split / f"{Path(name).stem}.txt"
        write_text_atomic(label, "".join(f"{line}\n" for line in lines))
    write_text_atomic(yaml_path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return yaml_path


# ---------------------------------------------------------------------------- reading


def _yaml_path(path: Path) -> Path:
    return path / "data.yaml" if path.is_dir() else path


def _split_keys(doc: dict) -> list[str]:
    """Keys of ``doc`` that name splits: train, val and test first, then the others."""
    found = [
        key
        for key, value in doc.items()
        if key not in _SETTINGS and isinstance(value, str | list) and value
    ]
    return sorted(found, key=lambda k: _STANDARD_SPLITS.index(k) if k in _STANDARD_SPLITS else 3)


def _load(yaml_path: Path, problems: Problems) -> dict | None:
    """The parsed top-level mapping, or None (reported) when there is none."""
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add("no such file", file=yaml_path)
        return None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problems.add(f"not valid YAML: {error}", file=yaml_path)
        return None
    if not isinstance(doc, dict):
        problems.add("the top level must be a mapping of keys to values", file=yaml_path)
        return None
    return doc


def _names(doc: dict, yaml_path: Path, problems: Problems) -> dict[int, str] | None:
    """Class index -> name from ``names:`` (a list, or a mapping as Ultralytics writes)."""
    names = doc.get("names")
    if isinstance(names, list):
        return {index: str(name) for index, name in enumerate(names)}
    if isinstance(names, dict):
        try:
            return dict(sorted((int(index), str(name)) for index, name in names.items()))
        except (TypeError, ValueError):
            problems.add("class indices must be integers", file=yaml_path, field="names")
            return None
    message = "missing" if names is None else "must be a list or a mapping of class names"
    problems.add(message, file=yaml_path, field="names")
    return None


def _split_files(
    doc: dict, split: str, root: Path, yaml_path: Path, problems: Problems
) -> tuple[list[Path], list[Path]]:
    """The split's image files, and the image folders among its entries."""
    entry = doc.get(split)
    if entry is None:
        problems.add(f"no entry for split {split!r}", file=yaml_path, field=split)
        return [], []
    images: list[Path] = []
    folders: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        location = root / str(item)
        if not location.exists() and str(item).startswith("../"):
            # Ultralytics' fallback for exports (Roboflow's) that write "../train/images"
            # beside a data.yaml in the dataset folder itself.
            location = root / str(item)[3:]
        if location.is_dir():
            folders.append(location)
            images += sorted(p for p in location.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        elif location.is_file():
            images += _listed_images(location)
        else:
            problems.add(
                f"no such image folder or image list: {location}", file=yaml_path, field=split
            )
    return images, folders


def _listed_images(list_file: Path) -> list[Path]:
    """The images a text file lists, one a line; relative lines are relative to its folder."""
    lines = list_file.read_text(encoding="utf-8").splitlines()
    return [list_file.parent / line.strip() for line in lines if line.strip()]


def _mirror(path: str) -> str:
    """``path`` with its last ``/images/`` replaced by ``/labels/`` (Ultralytics' rule)."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return labels.join(path.rsplit(images, 1))


def _label_path(image: Path) -> Path:
    return Path(_mirror(str(image.absolute()))).with_suffix(".txt")


def _image_record(
    image: Path, label: Path, image_id: int, root: Path, problems: Problems
) -> ImageRecord | None:
    """One image with the objects of ``label``; None (reported) when its header is unreadable."""
    try:
        width, height = image_size(image)
    except ImageError as error:
        problems.add(error.message, file=image, error=ImageError)
        return None
    annotations = _read_labels(label, width, height, problems) if label.is_file() else []
    try:
        file = image.relative_to(root).as_posix()
    except ValueError:  # listed from outside the dataset folder: keep the absolute path
        file = str(image)
    return ImageRecord(file, width, height, image_id, annotations)


def _read_labels(label: Path, width: int, height: int, problems: Problems) -> list[Annotation]:
    """The objects of one label file, in absolute pixels; bad lines reported and skipped."""
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        problems.add("not a text file", file=label)
        return []
    annotations = []
    for number, line in enumerate(lines, start=1):
        values = line.split()
        if not values:
            continue
        try:
            class_index, coordinates = _parse_line(values)
        except DataError as fault:
            problems.add(fault.message, file=label, record=f"line {number}", field=fault.field)
            continue
        annotations.append(_annotation(class_index, coordinates, width, height))
    return annotations


def _parse_line(values: list[str]) -> tuple[int, list[float]]:
    """``(class index, normalised coordinates)`` of one label line's fields."""
    count = len(values)
    if count != len(_BOX_FIELDS) and (count < 7 or count % 2 == 0):
        raise DataError(
            f"{count} values; expected 5 (class cx cy w h) or an odd number of at least 7 "
            "(class, then x y of 3 or more polygon points)",
            field="values",
        )
    numbers = []
    for position, text in enumerate(values):
        try:
            numbers.append(float(text))
        except ValueError:
            raise DataError(f"not a number: {text!r}", field=_field(position, count)) from None
    if not numbers[0].is_integer():
        raise DataError(f"a class index must be a whole number, not {values[0]!r}", field="class")
    return int(numbers[0]), numbers[1:]


def _field(position: int, count: int) -> str:
    """Name of the label line field at ``position``: class, cx..h, or x1, y1, x2..."""
    if position == 0 or count == len(_BOX_FIELDS):
        return _BOX_FIELDS[position]
    return f"{'xy'[(position - 1) % 2]}{(position + 1) // 2}"


def _annotation(class_index: int, coordinates: list[float], width: int, height: int) -> Annotation:
    """An annotation from normalised coordinates: a ``cxcywh`` box or a polygon."""
    category_id = class_index + 1
    if len(coordinates) == 4:
        xyxy = box_convert(np.asarray(coordinates, dtype=np.float64), "cxcywh", "xyxy")
        box = denormalize_boxes(xyxy, width, height).tolist()
        return Annotation(bbox=tuple(box), category_id=category_id)
    points = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2) * (width, height)
    bbox = (*points.min(axis=0).tolist(), *points.max(axis=0).tolist())
    return Annotation(bbox=bbox, category_id=category_id, segmentation=[points.ravel().tolist()])


def _report_orphans(folders: list[Path], labels: set[Path], problems: Problems) -> None:
    """Report label files, in the label folders of the split's image folders, of no image."""
    for folder in folders:
        label_folder = Path(_mirror(f"{folder.absolute()}{os.sep}"))
        if label_folder == folder.absolute():  # labels beside images: no folder of their own
            continue
        for label in sorted(label_folder.rglob("*.txt")):
            if label not in labels:
                problems.add(
                    f"label file for a missing image: no {label.stem}.* beside the other images",
                    file=label,
                    record=f"label {label.stem}",
                    field="image",
                )


# ---------------------------------------------------------------------------- writing


def _merged_yaml(yaml_path: Path, split: str, names: list[str]) -> dict[str, Any]:
    """``data.yaml`` content: the splits it already lists, this split, and ``names``."""
    old = (_load(yaml_path, Problems(strict=False)) if yaml_path.is_file() else None) or {}
    old_names = _names(old, yaml_path, Problems(strict=False)) if "names" in old else None
    if old_names is not None and list(old_names.values()) != names:
        raise DataError(
            f"the classes of split {split!r} ({names}) differ from those data.yaml already "
            f"lists for its other splits ({list(old_names.values())})",
            file=yaml_path,
            field="names",
        )
    entries = {**old, split: f"images/{split}"}
    kept = {key: entries[key] for key in _split_keys(entries)}
    return {"path": ".", **kept, "names": dict(enumerate(names))}


def _label_lines(catalog: Catalog, record: ImageRecord, segment: bool) -> list[str]:
    """One ``class value...`` line per annotation of ``record``, values with 6 decimals."""
    width, height = record_size(catalog, record)
    index = catalog.class_index
    lines = []
    for annotation in record.annotations:
        if segment:
            points = np.asarray(_one_polygon(annotation, width, height)).reshape(-1, 2)
            values = (points / (width, height)).ravel().tolist()
        else:
            cxcywh = box_convert(np.asarray(annotation.bbox, dtype=np.float64), "xyxy", "cxcywh")
            values = normalize_boxes(cxcywh, width, height).tolist()
        lines.append(" ".join([str(index[annotation.category_id])] + [f"{v:.6f}" for v in values]))
    return lines


def _one_polygon(annotation: Annotation, width: int, height: int) -> list[float]:
    """The single polygon that stands for ``annotation``'s segmentation in a label line.

    Every part is kept (merged into one ring) and the ring is fitted to the annotation's
    box, because YOLO readers take the polygon's extent as the box: so boxes survive
    COCO -> YOLO -> COCO to the 6 decimals of the label file.
    """
    segmentation = annotation.segmentation
    if isinstance(segmentation, list):
        parts = (
            segmentation  # polygons of fewer than 3 points are skipped (data check reports them)
        )
    elif segmentation:
        parts = mask_to_polygons(segmentation_to_mask(segmentation, height, width))
    else:
        parts = []
    ring = merge_polygons(parts)
    return fit_polygon_to_box(ring, annotation.bbox) if ring else box_polygon(annotation.bbox)
