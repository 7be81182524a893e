"""Helpers the format writers share: flat, collision-free file names and pre-write checks.

Writers refuse a catalog that cannot be written faithfully *before* touching the disk, so
a failed conversion never leaves half a dataset behind.
"""

from __future__ import annotations

from pathlib import Path

from visionkit.data.images import image_size
from visionkit.data.records import Catalog, ImageRecord
from visionkit.errors import DataError, ImageError


def unique_path(path: Path, taken: set[str]) -> Path:
    """``path``, or ``<stem>_<n><suffix>`` with the smallest ``n`` not yet in ``taken``.

    Args:
        path: Wanted destination.
        taken: Lower-cased destinations already used; the returned one is added. Lower
            case, because ``a.jpg`` and ``A.jpg`` are one file on macOS and Windows.

    Returns:
        A destination that no earlier call returned.
    """
    candidate, n = path, 0
    while str(candidate).lower() in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    taken.add(str(candidate).lower())
    return candidate


def split_image_names(catalog: Catalog, taken: set[str] | None = None) -> list[str]:
    """File names for ``catalog``'s images in one flat folder: base names, unique by stem.

    YOLO and VOC name label files after the image's stem, so stems must differ, not only
    names (``a.jpg`` and ``a.png`` would share ``a.txt``). A stem already used gets
    ``_1``, ``_2``... as :func:`unique_path` does.

    Args:
        catalog: The split being written.
        taken: Lower-cased stems already used in the folder (by other splits); the stems
            returned are added to it.

    Returns:
        One file name per image, in catalog order.
    """
    taken = set() if taken is None else taken
    names = []
    for record in catalog:
        name = Path(record.file)
        names.append(unique_path(Path(name.stem), taken).name + name.suffix)
    return names


def record_size(catalog: Catalog, record: ImageRecord) -> tuple[int, int]:
    """``(width, height)`` of ``record``: as recorded, else read from the image's header.

    Raises:
        ImageError: the size is not recorded and the image header cannot be read.
    """
    if record.width > 0 and record.height > 0:
        return record.width, record.height
    return image_size(catalog.image_path(record))


def require_image_files(catalog: Catalog) -> None:
    """Refuse, before anything is written, a catalog with a missing image file.

    Raises:
        ImageError: naming the first missing file.
    """
    for record in catalog:
        path = catalog.image_path(record)
        if not path.is_file():
            raise ImageError(
                "no such image file", file=path, record=f"image {record.id}", field="file"
            )


def require_known_categories(catalog: Catalog) -> None:
    """Refuse, before anything is written, an annotation whose category is not in the catalog.

    YOLO and VOC store a class index or name, which an unknown category id has none of.

    Raises:
        DataError: naming the first such annotation.
    """
    known = set(catalog.names)
    for record in catalog:
        for annotation in record.annotations:
            if annotation.category_id not in known:
                raise DataError(
                    f"category id {annotation.category_id} is not among the catalog's categories",
                    file=catalog.source or catalog.root,
                    record=f"image {record.id} annotation {annotation.id}",
                    field="category_id",
                )


def box_polygon(bbox: tuple[float, float, float, float]) -> list[float]:
    """The four corners of an ``xyxy`` box as a flat polygon, clockwise from top-left.

    Example:
        >>> box_polygon((1.0, 2.0, 5.0, 4.0))
        [1.0, 2.0, 5.0, 2.0, 5.0, 4.0, 1.0, 4.0]
    """
    x1, y1, x2, y2 = bbox
    return [x1, y1, x2, y1, x2, y2, x1, y2]
