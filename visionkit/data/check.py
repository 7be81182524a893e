"""What a dataset's records mean, checked once for every format.

Format readers check syntax (is it JSON, does a line hold five numbers); this module checks
meaning, the same way for COCO, YOLO, VOC, image folders and PNG masks, because every
reader produces a :class:`~visionkit.data.records.Catalog`:

- image files: present, fully decodable, and as large as the record says;
- boxes: finite, with positive width and height, inside the image (1 px tolerance);
- categories: every label known, category ids and names unique; image and annotation ids
  unique;
- segmentations: polygons of at least 3 points, RLE of the image's size, semantic masks
  present, of the image's size and holding only category ids, 0 or 255;
- labels at all: a split without a single label fails loudly.

Faults go to a :class:`~visionkit.data.formats.Problems`: :func:`check_dataset` collects
them all (``visionkit data check``), :func:`load_checked` raises the first (loading for
training), so what the check reports is exactly what training would refuse.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visionkit.data.formats import Problems, detect_format, format_module, read_catalog
from visionkit.data.images import image_size, read_mask, verify_image
from visionkit.data.records import IGNORE_INDEX, Annotation, Catalog, ImageRecord, Segmentation
from visionkit.errors import DataError, ImageError

BOX_TOLERANCE = 1.0
"""Pixels a box may reach past the image border before it counts as outside: annotation
tools and ``xywh`` -> ``xyxy`` rounding often put the far edge at ``width + 0.5``."""

Size = tuple[int, int]
"""``(width, height)`` in pixels."""

__all__ = ["BOX_TOLERANCE", "check_catalog", "check_dataset", "load_checked"]


def check_catalog(
    catalog: Catalog,
    problems: Problems,
    *,
    verify_images: bool = True,
    workers: int | None = None,
) -> None:
    """Report every semantic fault of ``catalog`` to ``problems``.

    Catalog-wide faults (duplicate ids, a split without labels) come first, then each
    image's faults in catalog order, so strict mode always raises the same first fault.

    Args:
        catalog: The split to check.
        problems: Where faults go: strict raises the first, collecting keeps them all.
        verify_images: Open every image and mask: decode it in full (truncated files),
            compare its real size with the record's and check mask values. False only
            checks that the files exist (a 5,000-image catalog takes a fraction of a
            second); annotated images whose record has no size still have their header
            read, so their boxes can be held to the real size.
        workers: Threads that open files in parallel; None lets the thread pool choose.

    Raises:
        DataError: in strict mode, the first fault, naming file, record and field
            (:class:`~visionkit.errors.ImageError` for unreadable image and mask files).
    """
    say = _Reporter(problems, catalog.source if catalog.source is not None else catalog.root)
    _check_categories(catalog, say)
    _check_unique_ids(catalog, say)
    _check_has_labels(catalog, say)
    known = set(catalog.names)
    inspect = _FileInspector(catalog, verify_images, frozenset(known | {0, IGNORE_INDEX}))
    with _inspect_all(inspect, catalog.images, verify_images, workers) as reports:
        for record, files in zip(catalog.images, reports, strict=True):
            for fault in files.faults:
                _report(problems, fault)
            _check_labels(record, _bounds(record, files.size), known, say)


def check_dataset(
    path: str | Path,
    split: str | None = None,
    *,
    format: str | None = None,
    images: str | Path | None = None,
    verify_images: bool = True,
) -> list[DataError]:
    """Read and check a dataset on disk, collecting every fault of every split.

    Args:
        path: The dataset file (COCO JSON, YOLO ``data.yaml``) or folder.
        split: Check only this split; None checks every split the dataset has.
        format: Format name; None detects it from ``path``.
        images: Image folder, for formats whose files do not say where images are (COCO).
        verify_images: Decode every image and mask in full (see :func:`check_catalog`).

    Returns:
        Every fault found, malformed records (from the reader) and semantic faults alike;
        empty when the dataset is clean.

    Raises:
        DataError: ``path`` does not exist or is not a dataset in a known format.

    Example:
        >>> for fault in check_dataset("shapes/train.json"):  # doctest: +SKIP
        ...     print(fault)
    """
    path = Path(path)
    name = format or detect_format(path)
    splits: Sequence[str | None] = [split] if split else format_module(name).splits(path)
    problems = Problems(strict=False)
    for each in splits or [None]:
        try:
            catalog = read_catalog(path, each, format=name, images=images, problems=problems)
        except DataError as error:  # a split that cannot be read at all: report, go on
            _report(problems, error)
            continue
        check_catalog(catalog, problems, verify_images=verify_images)
    return problems.errors


def load_checked(
    path: str | Path,
    split: str | None = None,
    *,
    format: str | None = None,
    images: str | Path | None = None,
    verify_images: bool = True,
) -> Catalog:
    """Read one split and check it strictly: what loading a dataset for training uses.

    Args:
        path: The dataset file or folder.
        split: Split to read; None picks ``"train"`` when present, else the first split.
        format: Format name; None detects it from ``path``.
        images: Image folder, for formats whose files do not say where images are (COCO).
        verify_images: Decode every image and mask in full (see :func:`check_catalog`).

    Returns:
        The split's catalog, free of every fault :func:`check_catalog` knows.

    Raises:
        DataError: the first malformed record or semantic fault, naming file, record and
            field.
    """
    catalog = read_catalog(path, split, format=format, images=images)
    _drop_zero_area_boxes(catalog)
    check_catalog(catalog, Problems(strict=True), verify_images=verify_images)
    return catalog


def _drop_zero_area_boxes(catalog: Catalog) -> None:
    """Remove annotations whose box has zero width or height, with one warning that counts them.

    Such boxes are common in exported datasets (a point label, a box clipped to the image
    edge) and carry no object to learn; dropping them is what a user expects, as long as
    it is said. Boxes with a negative or non-finite extent stay, for the check to refuse.
    """
    dropped = []
    for record in catalog.images:
        zero = [i for i, a in enumerate(record.annotations) if _zero_area(a.bbox)]
        dropped += [_annotation_name(record, record.annotations[i], i) for i in zero]
        record.annotations = [a for i, a in enumerate(record.annotations) if i not in zero]
    if dropped:
        warnings.warn(
            f"{catalog.source}: dropped {len(dropped)} box(es) of zero area "
            f"(the first: {dropped[0]})",
            stacklevel=3,
        )


def _report(problems: Problems, fault: DataError) -> None:
    """Pass an already built fault on to ``problems``, keeping its type."""
    kind = type(fault)
    problems.add(fault.message, file=fault.file, record=fault.record, field=fault.field, error=kind)


@dataclass(frozen=True)
class _Reporter:
    """Reports faults found in the dataset file itself (``source``) to ``problems``."""

    problems: Problems
    source: Path

    def __call__(self, message: str, record: str | None = None, field: str | None = None) -> None:
        self.problems.add(message, file=self.source, record=record, field=field)


def _repeated(values: Iterable[Hashable]) -> list[tuple[Hashable, int]]:
    """``(value, count)`` for every value seen more than once, in order of first sight."""
    return [(value, count) for value, count in Counter(values).items() if count > 1]


def _check_categories(catalog: Catalog, say: _Reporter) -> None:
    for cid, count in _repeated(c.id for c in catalog.categories):
        say(f"category id {cid} is used by {count} categories", f"category {cid}", "id")
    for name, count in _repeated(c.name for c in catalog.categories):
        say(f"category name {name!r} is used by {count} categories", f"category {name!r}", "name")


def _check_unique_ids(catalog: Catalog, say: _Reporter) -> None:
    for iid, count in _repeated(r.id for r in catalog.images):
        say(f"image id {iid} is used by {count} images", f"image {iid}", "id")
    # Id 0 means "the format has no annotation ids" (YOLO, VOC), so it may repeat.
    annotation_ids = (a.id for r in catalog.images for a in r.annotations if a.id > 0)
    for aid, count in _repeated(annotation_ids):
        say(f"annotation id {aid} is used by {count} annotations", f"annotation {aid}", "id")


def _check_has_labels(catalog: Catalog, say: _Reporter) -> None:
    if not any(r.annotations or r.label is not None or r.mask_file for r in catalog.images):
        say(
            f"the split has no labels: {len(catalog)} image(s) without a single annotation, "
            "image label or mask"
        )


def _bounds(record: ImageRecord, real: Size | None) -> Size | None:
    """The size boxes must fit in: the recorded one, else the real one, else unknown."""
    if record.width > 0 and record.height > 0:
        return (record.width, record.height)
    return real


def _annotation_name(record: ImageRecord, annotation: Annotation, index: int) -> str:
    if annotation.id > 0:
        return f"annotation {annotation.id}"
    return f"image {record.id} annotation #{index + 1}"


def _check_labels(
    record: ImageRecord, bounds: Size | None, known: set[int], say: _Reporter
) -> None:
    """Report the faults of one image's label and annotations (no file access)."""
    if record.label is not None and record.label not in known:
        say(f"unknown category id {record.label}", f"image {record.id}", "label")
    for index, annotation in enumerate(record.annotations):
        name = _annotation_name(record, annotation, index)
        if annotation.category_id not in known:
            say(f"unknown category id {annotation.category_id}", name, "category_id")
        for message in _box_faults(annotation.bbox, bounds):
            say(message, name, "bbox")
        if annotation.segmentation is not None:
            message = _segmentation_fault(annotation.segmentation, bounds)
            if message:
                say(message, name, "segmentation")


def _box_faults(bbox: Sequence[float], bounds: Size | None) -> list[str]:
    """What is wrong with an ``xyxy`` box in an image of size ``bounds`` (None: unknown)."""
    if not all(math.isfinite(v) for v in bbox):
        return [f"box {tuple(bbox)} has a non-finite coordinate"]
    x1, y1, x2, y2 = bbox
    box = f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    faults = []
    shape = [_extent_fault(x2 - x1, "width", "x"), _extent_fault(y2 - y1, "height", "y")]
    if any(shape):
        faults.append(f"{box} has " + " and ".join(s for s in shape if s))
    if bounds is not None and _outside((x1, y1, x2, y2), bounds):
        faults.append(f"{box} reaches outside the {bounds[0]}x{bounds[1]} image")
    return faults


def _zero_area(bbox: Sequence[float]) -> bool:
    """Whether a finite ``xyxy`` box has zero width or zero height (and neither negative)."""
    x1, y1, x2, y2 = bbox
    extents = (x2 - x1, y2 - y1)
    return all(math.isfinite(e) and e >= 0 for e in extents) and min(extents) == 0


def _extent_fault(extent: float, name: str, axis: str) -> str | None:
    if extent < 0:
        return f"negative {name} ({axis}2 < {axis}1)"
    if extent == 0:
        return f"zero {name}"
    return None


def _outside(box: tuple[float, float, float, float], bounds: Size) -> bool:
    x1, y1, x2, y2 = box
    width, height = bounds
    tol = BOX_TOLERANCE
    return min(x1, x2, y1, y2) < -tol or max(x1, x2) > width + tol or max(y1, y2) > height + tol


def _segmentation_fault(segmentation: Segmentation, bounds: Size | None) -> str | None:
    """What is wrong with polygons or an RLE in an image of size ``bounds``, or None."""
    if isinstance(segmentation, dict):
        return _rle_fault(segmentation, bounds)
    if not segmentation:
        return "empty polygon list"
    short = [str(i) for i, polygon in enumerate(segmentation) if len(polygon) < 6]
    if short:
        return f"polygon {', '.join(short)} has fewer than 3 points"
    return None


def _rle_fault(rle: dict, bounds: Size | None) -> str | None:
    size = rle.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        return "RLE has no 'size' [height, width]"
    height, width = size
    if bounds is not None and (width, height) != bounds:
        return f"mask of the wrong size: RLE {width}x{height}, image {bounds[0]}x{bounds[1]}"
    return None


@dataclass
class _FileReport:
    """What opening one record's image and mask files found."""

    size: Size | None = None  # real (width, height); None when not read or unreadable
    faults: list[DataError] = field(default_factory=list)

    def add(
        self,
        message: str,
        path: Path,
        record: ImageRecord,
        field: str,
        kind: type[DataError] = DataError,
    ) -> None:
        self.faults.append(kind(message, file=path, record=f"image {record.id}", field=field))


@dataclass(frozen=True)
class _FileInspector:
    """Checks one record's image and mask files; safe to call from many threads."""

    catalog: Catalog
    verify: bool
    mask_values: frozenset[int]  # values a semantic mask may hold

    def __call__(self, record: ImageRecord) -> _FileReport:
        report = _FileReport()
        self._image(record, report)
        if record.mask_file:
            self._mask(record, report)
        return report

    def _image(self, record: ImageRecord, report: _FileReport) -> None:
        path = self.catalog.image_path(record)
        if not path.is_file():
            report.add("image file not found", path, record, "file", ImageError)
            return
        recorded = _bounds(record, None)
        if not self.verify and (recorded is not None or not record.annotations):
            return  # without verification, headers are read only where boxes need a size
        error = verify_image(path) if self.verify else None
        try:
            report.size = image_size(path) if error is None else None
        except ImageError as header_error:
            error = header_error
        if error is not None:
            report.add(error.message, path, record, "file", ImageError)
        elif recorded is not None and report.size != recorded:
            (width, height), (rw, rh) = report.size, recorded
            message = f"the image is {width}x{height} pixels but the record says {rw}x{rh}"
            report.add(message, path, record, "width" if width != rw else "height")

    def _mask(self, record: ImageRecord, report: _FileReport) -> None:
        path = self.catalog.mask_path(record)
        if not path.is_file():
            report.add("mask file not found", path, record, "mask_file", ImageError)
            return
        if not self.verify:
            return
        try:
            mask = read_mask(path)
        except ImageError as error:
            report.add(error.message, path, record, "mask_file", ImageError)
            return
        (height, width), image = mask.shape, report.size or _bounds(record, None)
        if image is not None and (width, height) != image:
            message = f"the mask is {width}x{height} pixels, its image {image[0]}x{image[1]}"
            report.add(message, path, record, "mask_file")
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        stray = [int(v) for v in present if int(v) not in self.mask_values]
        if stray:
            message = f"mask values {stray} are neither category ids, 0 nor {IGNORE_INDEX} (ignore)"
            report.add(message, path, record, "mask_file")


@contextmanager
def _inspect_all(
    inspect: _FileInspector, records: list[ImageRecord], parallel: bool, workers: int | None
) -> Iterator[Iterator[_FileReport]]:
    """Yield an iterator of ``inspect(record)`` results, in ``records`` order.

    Decoding runs in a thread pool (Pillow's decoders release the GIL); results still come
    in order, so faults are reported deterministically. Leaving the block early (strict
    mode raising) cancels the images not yet started.
    """
    if not parallel:
        yield map(inspect, records)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visionkit-check")
    try:
        yield iter(
            tqdm(
                pool.map(inspect, records),
                total=len(records),
                desc="checking images",
                unit="image",
                leave=False,
                disable=not sys.stderr.isatty(),
            )
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
