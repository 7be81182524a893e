"""Dataset formats, each read into a :class:`~visionkit.data.records.Catalog` and written from one.

Every format module (``coco``, ``yolo``, ``voc``, ``folder``, ``masks``) has the same
four functions, so this registry, the checks and the CLI treat them alike:

- ``detect(path) -> bool``: whether ``path`` looks like a dataset of this format;
- ``splits(path) -> list[str]``: the splits found at ``path`` (``["train", "val"]``...);
- ``read(path, split, problems, images=None) -> Catalog``: parse one split, reporting
  every malformed record to ``problems`` (see :class:`Problems`) and skipping it;
- ``write(catalog, out, split) -> Path``: write one split under the folder ``out``
  (images are hard-linked or copied into the format's layout) and return the dataset
  file or folder written.

Readers check the *syntax* of their files (is it JSON, does a line have five numbers, is
there an image for this label file); what a record *means* (box inside the image, known
category, unique id, readable image) is checked once for every format in
:mod:`visionkit.data.check`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from visionkit.data.formats._problems import Problems
from visionkit.data.records import Catalog
from visionkit.errors import DataError

FORMAT_NAMES = ("coco", "yolo", "voc", "folder", "masks")
"""Every dataset format, in the order :func:`detect_format` tries them."""

__all__ = [
    "FORMAT_NAMES",
    "Problems",
    "detect_format",
    "format_module",
    "read_catalog",
    "write_catalog",
]


def format_module(name: str) -> ModuleType:
    """The module that reads and writes format ``name`` (one of :data:`FORMAT_NAMES`)."""
    if name not in FORMAT_NAMES:
        raise DataError(
            f"unknown dataset format {name!r}; expected one of {', '.join(FORMAT_NAMES)}",
            field="format",
        )
    return importlib.import_module(f"visionkit.data.formats.{name}")


def detect_format(path: str | Path) -> str:
    """Name the format of the dataset at ``path`` (a dataset file or folder).

    Raises:
        DataError: ``path`` does not exist or matches no format.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", file=path)
    for name in FORMAT_NAMES:
        if format_module(name).detect(path):
            return name
    raise DataError(f"not a dataset in any known format ({', '.join(FORMAT_NAMES)})", file=path)


def read_catalog(
    path: str | Path,
    split: str | None = None,
    *,
    format: str | None = None,
    images: str | Path | None = None,
    problems: Problems | None = None,
) -> Catalog:
    """Read one split of a dataset on disk.

    Args:
        path: The dataset file (COCO JSON, YOLO ``data.yaml``) or folder.
        split: Split to read; None picks ``"train"`` when present, else the first split.
        format: Format name; None detects it from ``path``.
        images: Image folder, for formats whose files do not say where images are (COCO).
        problems: Where malformed records go; None means strict: raise the first one.

    Returns:
        The split's catalog, without the records that could not be parsed.

    Raises:
        DataError: in strict mode, the first malformed record, naming file, record and field.
    """
    path = Path(path)
    module = format_module(format or detect_format(path))
    available = module.splits(path)
    if split is None:
        split = "train" if "train" in available or not available else available[0]
    elif available and split not in available:
        raise DataError(
            f"no split {split!r}; this dataset has {', '.join(available)}", file=path, field="split"
        )
    return module.read(
        path,
        split,
        problems if problems is not None else Problems(strict=True),
        images=None if images is None else Path(images),
    )


def write_catalog(catalog: Catalog, out: str | Path, format: str, split: str = "train") -> Path:
    """Write ``catalog`` as split ``split`` of a ``format`` dataset in folder ``out``.

    Returns:
        The dataset file or folder that :func:`read_catalog` reads back.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return format_module(format).write(catalog, out, split)
