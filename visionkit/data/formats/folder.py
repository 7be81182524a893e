"""Image folders for classification: ``<root>/<split>/<class name>/<image>``.

The layout of torchvision's ``ImageFolder`` and Ultralytics' classify datasets. Two shapes
are recognised:

- ``<root>/<split>/<class>/<image>``: every visible subfolder of ``root`` is a split;
- ``<root>/<class>/<image>``: class folders directly, read as the one split :data:`SINGLE_SPLIT`.

The split shape wins when any subfolder of ``root`` holds folders of images, so an image
left at a split's top level is reported rather than turning the split into a class; in the
class-folder shape, class folders therefore hold their images directly.

Category ids are ``0..K-1`` over the sorted class folder names of *all* splits, as in
``ImageFolder``, so a class missing from one split still gets the same id in every split.
In the split shape, images may also sit in subfolders of a class folder (``ImageFolder``
finds them too). Names that start with a dot (``.DS_Store``, ``.ipynb_checkpoints``) are
not part of the dataset: tools create them behind the user's back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from visionkit.data.formats._files import place_file
from visionkit.data.formats._problems import Problems
from visionkit.data.formats._writing import require_image_files, unique_path
from visionkit.data.images import IMAGE_SUFFIXES, is_image_file, recorded_size
from visionkit.data.records import Catalog, Category, ImageRecord
from visionkit.errors import DataError

SINGLE_SPLIT = "all"
"""Split name of a folder that holds class folders directly, without split folders."""

# Sibling folders that mark another format's layout (PNG masks, YOLO without data.yaml),
# whose `images/<split>/` folders would otherwise look like splits of class folders.
_OTHER_LAYOUTS = ({"images", "masks"}, {"images", "labels"})


def detect(path: Path) -> bool:
    """Whether ``path`` is a folder of class folders, or of split folders of class folders."""
    return _layout(Path(path)) is not None


def splits(path: Path) -> list[str]:
    """Split folder names (sorted), ``[SINGLE_SPLIT]`` for bare class folders, else ``[]``."""
    path = Path(path)
    layout = _layout(path)
    if layout == "split":
        return [folder.name for folder in _subfolders(path)]
    return [SINGLE_SPLIT] if layout == "flat" else []


def read(path: Path, split: str, problems: Problems, images: Path | None = None) -> Catalog:
    """Read one split of an image-folder dataset.

    Args:
        path: The dataset folder.
        split: A name from :func:`splits`.
        problems: Receives an empty class folder, a non-image file in a class folder and an
            image outside any class folder; none of them becomes a record.
        images: Unused: the folders themselves say where the images are.

    Returns:
        One record per image with ``label`` = category id, no annotations, and the size
        read from the image header (0 x 0 when the header is unreadable: the checks in
        :mod:`visionkit.data.check` report that file).

    Raises:
        DataError: ``split`` is not a split of ``path``; in strict mode, the first fault.
    """
    path = Path(path)
    if split not in splits(path):
        raise DataError(
            f"no split {split!r} in this image-folder dataset", file=path, field="split"
        )
    split_folder = path if split == SINGLE_SPLIT else path / split
    categories = _categories(path)
    ids = {category.name: category.id for category in categories}
    _report_loose_images(split_folder, problems)
    records: list[ImageRecord] = []
    for class_folder in _subfolders(split_folder):
        for file in _class_images(class_folder, problems):
            records.append(_record(path, file, ids[class_folder.name], len(records) + 1))
    return Catalog(root=path, categories=categories, images=records, source=path)


def write(catalog: Catalog, out: Path, split: str) -> Path:
    """Place every image of ``catalog`` in ``<out>/<split>/<class name>/``.

    Images are hard-linked (copied across file systems). Two records with the same file
    name in one class folder get ``_1``, ``_2``... before the suffix.

    Returns:
        ``out``, the dataset folder that :func:`read` reads back. Category ids are not
        stored: reading back numbers the class folders ``0..K-1`` in sorted name order.

    Raises:
        DataError: a record has no label or an unknown one, a category name cannot be a
            folder name, or an image file is missing.
    """
    require_image_files(catalog)
    out = Path(out)
    names = {category.id: _folder_name(category) for category in catalog.categories}
    taken: set[str] = set()
    for record in catalog:
        source = catalog.image_path(record)
        folder = out / split / names[_label(catalog, record, names)]
        place_file(source, unique_path(folder / Path(record.file).name, taken))
    return out


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _subfolders(folder: Path) -> list[Path]:
    """Visible subfolders of ``folder``, sorted by name (``[]`` when it is not a folder)."""
    if not folder.is_dir():
        return []
    # scandir knows entry types from the directory listing: no stat per image, which keeps
    # detecting a folder of a million images fast.
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and _visible(Path(e.name)))


def _holds_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image_file(e.name) for e in entries)


def _layout(path: Path) -> str | None:
    """``"split"``, ``"flat"`` or None (not an image-folder dataset)."""
    folders = _subfolders(path)
    names = {folder.name for folder in folders}
    if any(layout <= names for layout in _OTHER_LAYOUTS):
        return None
    if any(_holds_images(c) for folder in folders for c in _subfolders(folder)):
        return "split"
    return "flat" if any(_holds_images(folder) for folder in folders) else None


def _categories(path: Path) -> list[Category]:
    """Categories ``0..K-1`` from the sorted class folder names of every split."""
    if _layout(path) == "flat":
        names = {folder.name for folder in _subfolders(path)}
    else:
        names = {c.name for folder in _subfolders(path) for c in _subfolders(folder)}
    return [Category(i, name) for i, name in enumerate(sorted(names))]


def _files_under(folder: Path) -> Iterator[Path]:
    """Visible files anywhere under ``folder`` (not inside hidden folders), sorted."""
    for file in sorted(folder.rglob("*")):
        parts = file.relative_to(folder).parts
        if file.is_file() and all(not part.startswith(".") for part in parts):
            yield file


def _class_images(class_folder: Path, problems: Problems) -> list[Path]:
    """Image files of one class folder; other files and an empty folder are reported."""
    images = []
    for file in _files_under(class_folder):
        if is_image_file(file):
            images.append(file)
        else:
            problems.add(
                f"not an image file (image suffixes: {' '.join(IMAGE_SUFFIXES)}); "
                f"class folders hold only images",
                file=file,
            )
    if not images:
        problems.add("class folder holds no images", file=class_folder)
    return images


def _report_loose_images(split_folder: Path, problems: Problems) -> None:
    """Report images that sit directly in the split folder, where no class names them."""
    for file in sorted(split_folder.iterdir()):
        if file.is_file() and _visible(file) and is_image_file(file):
            problems.add(
                "image outside any class folder; move it into the folder of its class", file=file
            )


def _record(root: Path, file: Path, label: int, image_id: int) -> ImageRecord:
    width, height = recorded_size(file)
    return ImageRecord(
        file=file.relative_to(root).as_posix(), width=width, height=height, id=image_id, label=label
    )


def _folder_name(category: Category) -> str:
    """The class folder name of ``category``, refusing names a folder cannot carry."""
    name = category.name
    if not name or name in {".", ".."} or name.startswith(".") or {"/", "\\"} & set(name):
        raise DataError(
            f"category name {name!r} cannot be a class folder name (empty, "
            f"hidden, or holding a path separator)",
            record=f"category {category.id}",
            field="name",
        )
    return name


def _label(catalog: Catalog, record: ImageRecord, names: dict[int, str]) -> int:
    """``record``'s category id, refusing a missing or unknown one."""
    if record.label is None or record.label not in names:
        problem = "has no class label" if record.label is None else "has an unknown class label"
        raise DataError(
            f"{problem}; the image-folder format stores one class per image",
            file=catalog.source,
            record=f"image {record.id}",
            field="label",
        )
    return record.label
