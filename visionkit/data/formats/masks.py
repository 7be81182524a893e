"""PNG semantic masks: one class-index PNG per image, plus a ``classes.txt``.

Layout::

    <root>/images/<split>/<stem>.<ext>   any image format
    <root>/masks/<split>/<stem>.png      uint8 gray or palette PNG: pixel = category id
    <root>/classes.txt                   lines "<id> <name>", "0 background" included

Pixel 0 is background and :data:`~visionkit.data.records.IGNORE_INDEX` (255) marks pixels
without a label, so category ids are ``0..254``. Masks must be PNG: JPEG's lossy
compression changes class values along every edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from visionkit.data.formats._files import place_file, write_text_atomic
from visionkit.data.formats._problems import Problems
from visionkit.data.formats._writing import require_image_files, unique_path
from visionkit.data.images import image_size, is_image_file, read_mask, recorded_size
from visionkit.data.records import IGNORE_INDEX, Catalog, Category, ImageRecord
from visionkit.errors import DataError
from visionkit.ops.masks import segmentation_to_mask

CLASSES_FILE = "classes.txt"
"""Name of the class list at the dataset root."""

MASK_SUFFIX = ".png"

BACKGROUND = Category(0, "background")
"""The class of mask pixel 0, written to ``classes.txt`` when a catalog has no id 0."""


def detect(path: Path) -> bool:
    """Whether ``path`` is a folder holding both ``images/`` and ``masks/``."""
    path = Path(path)
    return (path / "images").is_dir() and (path / "masks").is_dir()


def splits(path: Path) -> list[str]:
    """Sorted split names: subfolders of ``images/`` or ``masks/``."""
    path = Path(path)
    return sorted({f.name for sub in ("images", "masks") for f in _subfolders(path / sub)})


def read(path: Path, split: str, problems: Problems, images: Path | None = None) -> Catalog:
    """Read one split of a PNG-mask dataset.

    Args:
        path: The dataset folder.
        split: A name from :func:`splits`.
        problems: Receives an image without a mask, a mask without an image, a mask that
            is not a PNG, a non-image file among the images and a malformed ``classes.txt``.
        images: Unused: images are always in ``images/<split>/``.

    Returns:
        One record per image that has a mask, with ``mask_file`` relative to ``path``, no
        annotations, and the size from the image header (0 x 0 when it is unreadable:
        :mod:`visionkit.data.check` reports that file and compares mask and image sizes).

    Raises:
        DataError: ``split`` is not a split of ``path``; in strict mode, the first fault.
    """
    path = Path(path)
    if split not in splits(path):
        raise DataError(f"no split {split!r} in this mask dataset", file=path, field="split")
    categories = read_classes(path / CLASSES_FILE, problems)
    masks = _masks_by_stem(path / "masks" / split, problems)
    records: list[ImageRecord] = []
    for file in _image_files(path / "images" / split, problems):
        mask = masks.pop(file.stem, None)
        if mask is None:
            problems.add(
                f"image has no mask (expected masks/{split}/{file.stem}{MASK_SUFFIX})",
                file=file,
                field="mask_file",
            )
            continue
        records.append(_record(path, file, mask, len(records) + 1))
    for mask in masks.values():
        problems.add("mask has no image of the same name", file=mask)
    return Catalog(root=path, categories=categories, images=records, source=path)


def write(catalog: Catalog, out: Path, split: str) -> Path:
    """Write ``catalog`` as split ``split`` of a PNG-mask dataset in ``out``.

    Images are hard-linked (copied across file systems); stems shared by two records get
    ``_1``, ``_2``... A record's mask is its ``mask_file`` (re-encoded as PNG when it is
    another format), or else rendered from its annotations' segmentations by
    :func:`render_mask`. ``classes.txt`` lists the catalog's categories, with
    ``0 background`` added when no category has id 0.

    Returns:
        ``out``, the dataset folder that :func:`read` reads back.

    Raises:
        DataError: a category id or name cannot be stored, an image or mask is missing, or
            a record has no pixel labels (see :func:`render_mask`).
    """
    require_image_files(catalog)
    out = Path(out)
    classes = classes_text(catalog.categories)
    taken: set[str] = set()
    for record in catalog:
        source = catalog.image_path(record)
        stem = Path(record.file).stem
        mask = unique_path(out / "masks" / split / f"{stem}{MASK_SUFFIX}", taken)
        place_file(source, out / "images" / split / f"{mask.stem}{source.suffix}")
        _write_mask(catalog, record, mask)
    write_text_atomic(out / CLASSES_FILE, classes)
    return out


def render_mask(record: ImageRecord, height: int, width: int) -> np.ndarray:
    """Paint a record's segmentations into a semantic mask; later annotations lie on top.

    Args:
        record: Image whose annotations all carry a ``segmentation`` (none at all gives a
            mask of background only, as for an image without objects).
        height: Mask height in pixels (the image's).
        width: Mask width in pixels.

    Returns:
        ``uint8`` array ``[H, W]``: 0 (background) or the category id of the last
        annotation covering each pixel.

    Raises:
        DataError: an annotation has no segmentation or one of another size, a category id
            is outside ``0..254``, or the record has an image label but no annotations
            (a classification record carries no pixel labels).
    """
    where = f"image {record.id}"
    if record.label is not None and not record.annotations:
        raise DataError(
            "has an image label but no pixel labels to draw a mask from",
            record=where,
            field="annotations",
        )
    mask = np.zeros((height, width), dtype=np.uint8)
    for annotation in record.annotations:
        where = f"image {record.id}, annotation {annotation.id}"
        if annotation.segmentation is None:
            raise DataError(
                "has a box but no segmentation; a semantic mask needs outlines",
                record=where,
                field="segmentation",
            )
        _check_class_id(annotation.category_id, where, "category_id")
        pixels = segmentation_to_mask(annotation.segmentation, height, width)
        if pixels.shape != (height, width):
            raise DataError(
                f"segmentation is {pixels.shape[1]}x{pixels.shape[0]} pixels, the "
                f"image {width}x{height}",
                record=where,
                field="segmentation",
            )
        mask[pixels] = annotation.category_id
    return mask


def read_classes(path: Path, problems: Problems) -> list[Category]:
    """Parse ``classes.txt`` (lines ``<id> <name>``; blank lines skipped) sorted by id.

    Malformed lines, ids outside ``0..254``, repeated ids and a missing file go to
    ``problems``; the lines that parse are kept.
    """
    if not path.is_file():
        problems.add("missing class list: write one line '<id> <name>' per class", file=path)
        return []
    categories: dict[int, Category] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            category = _parse_class(line, f"line {number}")
        except DataError as error:
            problems.add(error.message, file=path, record=error.record, field=error.field)
            continue
        if category.id in categories:
            problems.add(
                f"class id {category.id} is listed twice",
                file=path,
                record=f"line {number}",
                field="id",
            )
            continue
        categories[category.id] = category
    return sorted(categories.values(), key=lambda c: c.id)


def classes_text(categories: list[Category]) -> str:
    """The ``classes.txt`` text of ``categories``, sorted by id, ``0 background`` added when
    no category has id 0.

    Raises:
        DataError: an id is outside ``0..254`` or a name is empty or spans lines.
    """
    listed = sorted(categories, key=lambda c: c.id)
    if not any(c.id == 0 for c in listed):
        listed.insert(0, BACKGROUND)
    for category in listed:
        where = f"category {category.id}"
        _check_class_id(category.id, where, "id")
        if not category.name.strip() or "\n" in category.name or "\r" in category.name:
            raise DataError("a class name must be one non-empty line", record=where, field="name")
    return "".join(f"{c.id} {c.name.strip()}\n" for c in listed)


def _parse_class(line: str, where: str) -> Category:
    parts = line.split(maxsplit=1)
    if len(parts) < 2:
        raise DataError(f"expected '<id> <name>', got {line.strip()!r}", record=where, field="name")
    try:
        class_id = int(parts[0])
    except ValueError:
        raise DataError(
            f"class id {parts[0]!r} is not an integer", record=where, field="id"
        ) from None
    _check_class_id(class_id, where, "id")
    return Category(class_id, parts[1].strip())


def _check_class_id(class_id: int, where: str, field: str) -> None:
    """Refuse ids that a uint8 mask cannot hold apart from the ignore value."""
    if not 0 <= class_id < IGNORE_INDEX:
        raise DataError(
            f"class id {class_id} is outside 0..{IGNORE_INDEX - 1} ({IGNORE_INDEX} "
            f"means 'no label' in a mask)",
            record=where,
            field=field,
        )


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _visible_files(folder: Path) -> list[Path]:
    """Files of ``folder`` (not its subfolders) without a leading dot, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _image_files(folder: Path, problems: Problems) -> list[Path]:
    """Images of ``folder``; other files, and a second image of one stem, are reported."""
    images: dict[str, Path] = {}
    for file in _visible_files(folder):
        if not is_image_file(file):
            problems.add("not an image file", file=file)
        elif file.stem in images:
            problems.add(
                f"another image has the same stem ({images[file.stem].name}), so "
                f"they would share one mask",
                file=file,
            )
        else:
            images[file.stem] = file
    return list(images.values())


def _masks_by_stem(folder: Path, problems: Problems) -> dict[str, Path]:
    masks = {}
    for file in _visible_files(folder):
        if file.suffix.lower() == MASK_SUFFIX:
            masks[file.stem] = file
        else:
            problems.add("a mask must be a PNG (lossy formats change class values)", file=file)
    return masks


def _record(root: Path, image: Path, mask: Path, image_id: int) -> ImageRecord:
    width, height = recorded_size(image)
    return ImageRecord(
        file=image.relative_to(root).as_posix(),
        width=width,
        height=height,
        id=image_id,
        mask_file=mask.relative_to(root).as_posix(),
    )


def _write_mask(catalog: Catalog, record: ImageRecord, out: Path) -> None:
    """Write ``record``'s semantic mask as PNG ``out``: its mask file, or one rendered."""
    source = catalog.mask_path(record)
    if source is not None and source.suffix.lower() == MASK_SUFFIX and source.is_file():
        place_file(source, out)
        return
    if source is not None:
        pixels = read_mask(source)  # raises ImageError naming a missing or unusable file
    else:
        width, height = record.width, record.height
        if not (width and height):
            width, height = image_size(catalog.image_path(record))
        pixels = render_mask(record, height, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out)  # uint8 [H, W] saves as an 8-bit gray PNG
